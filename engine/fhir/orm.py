"""ORM^O01 and OML^O21 -> a ServiceRequest per ORC/OBR pair (with the order's OBX as
Observations in supportingInfo, SPM as Specimens, DG1 as Conditions in reasonReference), a
MedicationRequest per ORC/RXO pair, a ServiceRequest for an ORC alone; AL1, DG1 and IN1 as
for ADT (ORM_O01 and OML_O21 message maps)."""

from __future__ import annotations

from engine.fhir.bundle import TransactionBundle, derived
from engine.fhir.clinical import add_allergies, add_conditions
from engine.fhir.coverage import add_coverages
from engine.fhir.medication import add_medication_request
from engine.fhir.observation import add_observation
from engine.fhir.options import ConvertOptions
from engine.fhir.orders import add_service_request, order_identifiers
from engine.fhir.oru import observation_identifier
from engine.fhir.segments import Seg, order_groups, seg_at
from engine.fhir.specimen import add_specimen
from engine.hl7.message import Message

DETAIL = ("OBR", "RXO")


def _orc_details(msg: Message) -> list[tuple[int, int, str | None]]:
    """(ORC occurrence, ORC position, the kind of detail segment that follows: OBR, RXO or
    None) for each ORC."""
    out = []
    orc_n = 0
    current: list | None = None
    for pos, seg in enumerate(msg.segments):
        sid = seg[:3]
        if sid == "ORC":
            orc_n += 1
            current = [orc_n, pos, None]
            out.append(current)
        elif sid in DETAIL and current is not None and current[2] is None:
            current[2] = sid
        elif sid == "PID":
            current = None
    return [tuple(x) for x in out]


def _conditions_by_position(bundle, msg, opts, patient_ref, encounter_ref) -> dict[int, str]:
    if not patient_ref:
        return {}
    return dict(add_conditions(bundle, msg, opts, patient_ref, encounter_ref))


def convert_orm(
    bundle: TransactionBundle,
    msg: Message,
    opts: ConvertOptions,
    patient_ref: str | None,
    encounter_ref: str | None,
) -> None:
    if patient_ref:
        add_allergies(bundle, msg, opts, patient_ref, encounter_ref)
        add_coverages(bundle, msg, opts, patient_ref)
    conditions = _conditions_by_position(bundle, msg, opts, patient_ref, encounter_ref)
    obx_idx = msg.segment_indexes("OBX")
    groups = order_groups(msg, reuse_orc=True)
    bounds = [*sorted(msg.segment_indexes("OBR") + msg.segment_indexes("ORC")), len(msg.segments)]
    seen: set[str] = set()
    for g in groups:
        orc_at, obr_at = seg_at(msg, "ORC", g.orc), seg_at(msg, "OBR", g.obr)
        placer, filler = order_identifiers(orc_at[1] if orc_at else None, obr_at[1], opts)
        order = placer or filler or derived(opts, "order", msg.get("MSH-10") or "", f"OBR-{g.obr}")
        order_key = f"{order['value']}@{order['system']}"
        specimens = [add_specimen(bundle, msg, p, opts, patient_ref, order_key) for p in g.spm]
        observations = []
        for occurrence, spm_i in g.obx:
            ident = observation_identifier(msg, obx_idx[occurrence - 1], order, seen)
            ref = add_observation(
                bundle, msg, occurrence, opts, patient_ref, encounter_ref,
                key=f"orm-obx-{occurrence}", specimen=specimens[spm_i] if spm_i >= 0 else None,
                identifier=ident,
            )  # fmt: skip
            if ref and spm_i < 0:
                observations.append(ref)
        end = next(b for b in bounds if b > g.obr_pos)
        reasons = [url for pos, url in conditions.items() if g.obr_pos < pos < end]
        add_service_request(
            bundle, msg, g.orc, g.obr, opts, patient_ref, encounter_ref,
            supporting_info=observations, specimens=[s for s in specimens if s],
            reasons=reasons,
        )  # fmt: skip
    if not patient_ref:
        return
    for orc_n, orc_pos, detail in _orc_details(msg):
        if detail == "RXO":
            rxo_pos = next(p for p in msg.segment_indexes("RXO") if p > orc_pos)
            add_medication_request(bundle, msg, Seg(msg, orc_pos), Seg(msg, rxo_pos), opts,
                                   patient_ref, encounter_ref)  # fmt: skip
        elif detail is None:  # an ORC alone (e.g. a cancel naming only the order numbers)
            add_service_request(bundle, msg, orc_n, None, opts, patient_ref, encounter_ref)


__all__ = ["convert_orm"]
