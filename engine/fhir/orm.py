"""ORM^O01 (and OML^O21: the same ORC/OBR groups) -> ServiceRequest per ORC/OBR pair, with
the order's OBX as Observations (ServiceRequest.supportingInfo) and SPM as Specimens
(checklist: shared/fhir-mapping.md).

DG1 -> reasonReference is left out: the Condition belongs to the DG1 mapping, which has no
shared key to point at yet [ours]. An ORC without an OBR (e.g. pharmacy RXO orders) gives no
ServiceRequest here."""

from __future__ import annotations

from engine.fhir.bundle import TransactionBundle
from engine.fhir.observation import add_observation, add_specimen
from engine.fhir.options import ConvertOptions
from engine.fhir.orders import add_service_request, order_groups
from engine.hl7.message import Message


def convert_orm(
    bundle: TransactionBundle,
    msg: Message,
    opts: ConvertOptions,
    patient_ref: str | None,
    encounter_ref: str | None,
) -> None:
    for g in order_groups(msg, reuse_orc=True):
        specimens = [add_specimen(bundle, msg, p, opts, patient_ref) for p in g.spm]
        specimen_refs = [s for s in specimens if s]
        observations = []
        for occurrence, spm_i in g.obx:
            ref = add_observation(
                bundle, msg, occurrence, opts, patient_ref, encounter_ref,
                key=f"orm-obx-{occurrence}", specimen=specimens[spm_i] if spm_i >= 0 else None,
            )  # fmt: skip
            if ref and spm_i < 0:
                observations.append(ref)
        add_service_request(
            bundle, msg, g.orc, g.obr, opts, patient_ref, encounter_ref,
            supporting_info=observations, specimens=specimen_refs,
        )  # fmt: skip


__all__ = ["convert_orm"]
