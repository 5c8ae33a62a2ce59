"""The V2-to-FHIR guide's segment maps, field by field, for the segments of our samples: which
field the guide maps to a FHIR element (a row with a target), whether we map it, and how to
see it in the bundle. Read from the guide's CSVs (HL7/v2-to-fhir, mappings/segments,
"HL7 Segment - FHIR E2_ <map>.csv", commit 04f95a1); the message maps (mappings/messages)
say which segment map applies to which segment of which message type.

A fact is a (segment map, field) pair whose field is valued in one of the message type's
samples and which the guide maps (its condition, if any, holds). ``M(check)`` marks one we
map: ``check`` (``Type.path[=value]``, any resource of Type, lists flattened) must hold in
that sample's bundle. ``N(reason)`` marks one we do not. ``NONE`` lists the fields the map
gives no FHIR target ("local implementation", ``extension??``, empty rows). Coverage is
mapped facts / all facts, per message type (tests/test_fhir_ig_coverage.py).

Maps of resources we do not produce are kept apart (OUTSIDE): their facts are counted in a
second figure, not in the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.fhir.datatypes import dtm
from engine.fhir.segments import Seg
from engine.fhir.vocab import GENDER
from engine.hl7.message import Message

SHARED = Path(__file__).resolve().parents[2] / "shared" / "samples"
OWN = Path(__file__).resolve().parent / "fhir_samples"
R5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-"
_EMPTY = Message("MSH|^~\\&|\rZZZ|")
EXT = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True)
class M:
    check: str
    when: object = None  # (segment, message) -> bool: the row's condition


@dataclass(frozen=True)
class N:
    reason: str
    when: object = None


def rows(none: str, **fields) -> dict:
    """A segment map: ``f3=M(...)`` rows and the fields with no target (``"1 2 7-9"``)."""
    out: dict = {"none": set()}
    for part in none.split():
        lo, _, hi = part.partition("-")
        out["none"].update(range(int(lo), int(hi or lo) + 1))
    out |= {int(k[1:]): v for k, v in fields.items()}
    return out


MAPS = {
    "MSH[Bundle]": rows("1-6 8 9 11-28", f7=M("Bundle.timestamp"), f10=M("Bundle.identifier")),
    "MSH[MessageHeader]": rows(
        "1 2 7 10 12-16 18 20 21 28",
        f3=M("MessageHeader.source.name"),
        f4=M("MessageHeader.sender"),
        f5=M("MessageHeader.destination"),
        f6=M("MessageHeader.destination.receiver", when=lambda s, m: not s.raw(23)),
        f8=M("MessageHeader.meta.security"),
        f9=M("MessageHeader.eventCoding"),
        f11=M("MessageHeader.meta.tag.system=http://terminology.hl7.org/CodeSystem/v2-0103"),
        f17=M("Organization.address.country"),
        f19=M("MessageHeader.language"),
        f22=M("MessageHeader.responsible"),
        f23=M("MessageHeader.destination.receiver"),
        f24=M("MessageHeader.source.endpoint"),
        f25=M("MessageHeader.destination.endpoint"),
        f26=M("MessageHeader.meta.security"),
        f27=M("MessageHeader.meta.security"),
    ),
    "EVN[Provenance]": rows(
        "1 3",
        f2=M("Provenance.recorded"),
        f4=M("Provenance.reason"),
        f5=M("Provenance.agent.who"),
        f6=M("Provenance.occurredDateTime"),
        f7=M("Provenance.location"),
    ),
    "PID[Patient]": rows(
        "1 10 18 22 27 31-34 37 38",
        f2=M("Patient.identifier"),
        f3=M("Patient.identifier"),
        f4=M("Patient.identifier"),
        f5=M("Patient.name"),
        f6=M(f"Patient.extension.url={EXT}patient-mothersMaidenName"),
        f7=M("Patient.birthDate", when=lambda s, m: bool(dtm(s.f(7).c(1)))),  # a real date
        f8=M("Patient.gender", when=lambda s, m: s.code(8) in GENDER),  # AdministrativeSex
        f9=M("Patient.name"),
        f11=M("Patient.address"),
        f12=M("Patient.address.district"),
        f13=M("Patient.telecom"),
        f14=M("Patient.telecom.use=work"),
        f15=M("Patient.communication.language"),
        f16=M("Patient.maritalStatus"),
        f17=M(f"Patient.extension.url={EXT}patient-religion"),
        f19=M("Patient.identifier.type.coding.code=SS"),
        f20=M("Patient.identifier.type.coding.code=DL"),
        f21=M("RelatedPerson.relationship.coding.code=MTH"),
        f23=M(f"Patient.extension.url={EXT}patient-birthPlace"),
        f24=M("Patient.multipleBirthBoolean", when=lambda s, m: not s.raw(25)),
        f25=M("Patient.multipleBirthInteger"),
        f26=M(f"Patient.extension.url={EXT}patient-citizenship"),
        f28=M(f"Patient.extension.url={EXT}patient-nationality"),
        f29=M("Patient.deceasedDateTime"),
        f30=M("Patient.deceasedBoolean", when=lambda s, m: not s.raw(29)),
        f35=M(f"Patient.extension.url={EXT}patient-animal"),
        f36=M(f"Patient.extension.url={EXT}patient-animal"),
        f39=M(f"Patient.extension.url={EXT}patient-citizenship"),
        f40=M("Patient.telecom"),
    ),
    "PID[Appointment]": rows(
        "1 5-40",
        f2=M("Appointment.participant.actor"),
        f3=M("Appointment.participant.actor"),
        f4=M("Appointment.participant.actor"),
    ),
    "PD1[Patient]": rows(
        "1 2 5 7-13 15-22",
        f3=M("Patient.generalPractitioner"),
        f4=M("Patient.generalPractitioner"),
        f6=M(f"Patient.extension.url={EXT}patient-disability"),
        f14=M(f"Patient.extension.url={EXT}patient-congregation"),
    ),
    "NK1[RelatedPerson]": rows(
        "1 10 11 13 14 17-19 21-29 34-36 38 39",
        f2=M("RelatedPerson.name"),
        f3=M("RelatedPerson.relationship"),
        f4=M("RelatedPerson.address"),
        f5=M("RelatedPerson.telecom"),
        f6=M("RelatedPerson.telecom.use=work"),
        f7=M("RelatedPerson.relationship"),
        f8=M("RelatedPerson.period.start"),
        f9=M("RelatedPerson.period.end"),
        f12=M("RelatedPerson.identifier"),
        f15=M("RelatedPerson.gender"),
        f16=M("RelatedPerson.birthDate"),
        f20=M("RelatedPerson.communication"),
        f30=M("RelatedPerson.name"),
        f31=M("RelatedPerson.telecom"),
        f32=M("RelatedPerson.address"),
        f33=M("RelatedPerson.identifier"),
        f37=M("RelatedPerson.identifier.system=http://hl7.org/fhir/sid/us-ssn"),
        f40=M("RelatedPerson.telecom"),
        f41=M("RelatedPerson.telecom"),
    ),
    "PV1[Encounter]": rows(
        "1 12 18 20-35 39 41 43 46-49 51",
        f2=M("Encounter.class"),
        f3=M("Encounter.location.location.reference", when=lambda s, m: _place(s.f(3))),
        f4=M("Encounter.type"),
        f5=M("Encounter.hospitalization.preAdmissionIdentifier"),
        f6=M("Encounter.location.status=completed", when=lambda s, m: _place(s.f(6))),
        f7=M("Encounter.participant.type.coding.code=ATND"),
        f8=M("Encounter.participant.type.coding.code=REF"),
        f9=M("Encounter.participant.type.coding.code=CON"),
        f10=M("Encounter.serviceType"),
        f11=M("Encounter.location.location"),
        f13=M("Encounter.hospitalization.reAdmission"),
        f14=M("Encounter.hospitalization.admitSource"),
        f15=M("Encounter.hospitalization.specialArrangement"),
        f16=M("Encounter.hospitalization.specialCourtesy"),
        f17=M("Encounter.participant.type.coding.code=ADM"),
        f19=M("Encounter.identifier"),
        f36=M("Encounter.hospitalization.dischargeDisposition"),
        f37=M("Encounter.hospitalization.destination"),
        f38=M("Encounter.hospitalization.dietPreference"),
        f40=N(
            "the bed status belongs on a Location the guide leaves to the implementer",
            when=lambda s, m: bool(s.f(3).c(2) or s.f(3).c(3)),
        ),
        f42=M("Encounter.location.status=reserved"),
        f44=M("Encounter.period.start"),
        f45=M("Encounter.period.end"),
        f50=M("Encounter.identifier"),
        f52=M("Encounter.participant.type.coding.code=PART"),
        f53=N("EpisodeOfCare is not produced"),
        f54=N("EpisodeOfCare is not produced"),
    ),
    "PV2[Encounter]": rows(
        "2 4-7 10 14-21 23 24 26-37 39-50",
        f1=M("Encounter.location.status=planned"),
        f3=M("Encounter.reasonCode"),
        f8=M(f"Encounter.extension.url={R5}Encounter.plannedStartDate"),
        f9=M(f"Encounter.extension.url={R5}Encounter.plannedEndDate"),
        f11=M("Encounter.length"),
        f12=M("Encounter.text.div"),
        f13=M("Encounter.participant.type.coding.code=REF"),
        f22=M("Encounter.meta.security"),
        f25=M("Encounter.priority"),
        f38=M(f"Encounter.extension.url={EXT}encounter-modeOfArrival"),
    ),
    "OBX[Observation]": rows(
        "1 2 9 12 13 22 26-28 30-32",
        f3=M("Observation.code"),
        f4=M(f"Observation.extension.url={EXT}observation-v2-subid"),
        f5=M("Observation.value"),
        f6=M("Observation.value.unit", when=lambda s, m: s.code(2) in ("NM", "SN", "NA")),
        f7=M("Observation.referenceRange.text"),
        f8=M("Observation.interpretation"),
        f10=M(f"Observation.extension.url={EXT}observation-nature-of-abnormal-test"),
        f11=M("Observation.status"),
        f14=M("Observation.effectiveDateTime"),
        f15=M("Observation.performer"),
        f16=M("Observation.performer"),
        f17=M("Observation.method"),
        f18=M("Observation.device"),
        f19=M(f"Observation.extension.url={EXT}observation-analysis-date-time"),
        f20=M("Observation.bodySite"),
        f21=M("Observation.identifier.type.coding.code=FILL"),
        f23=M("Observation.performer"),
        f24=M("Organization.address"),
        f25=M("PractitionerRole.code.coding.code=MDIR"),
        f29=M("Observation.category"),
        f33=M("Observation.specimen"),
    ),
    "OBX[DocumentReference]": rows(
        "1-4 6-33",
        f5=M(
            "DocumentReference.content.attachment",
            when=lambda s, m: s.code(2) in ("ED", "FT", "RP", "TX"),
        ),
    ),
    "NTE[Observation]": rows(
        "1 2 4 7-9", f3=M("*.note.text"), f5=M("*.note.authorReference"), f6=M("*.note.time")
    ),
    "AL1[AllergyIntolerance]": rows(
        "1",
        f2=M("AllergyIntolerance.category"),
        f3=M("AllergyIntolerance.code"),
        f4=M("AllergyIntolerance.criticality"),
        f5=M("AllergyIntolerance.reaction.manifestation.text"),
        f6=M("AllergyIntolerance.onsetDateTime"),
    ),
    "DG1[Condition]": rows(
        "1 2 6-15 17 18 23-26",
        f3=M("Condition.code"),
        f4=M("Condition.code.text"),
        f5=M("Condition.onsetDateTime"),
        f16=M("Condition.asserter"),
        f19=M("Condition.recordedDate"),
        f20=M("Condition.identifier"),
        f21=M("Condition.verificationStatus"),
        f22=N("condition-dueTo needs the parent Condition's reference"),
    ),
    "DG1[Encounter]": rows(
        "1 2 7-14 17 18 23-26",
        f3=M("Encounter.diagnosis.condition"),
        f4=M("Encounter.diagnosis.condition"),
        f5=M("Encounter.diagnosis.condition"),
        f6=M(
            "Encounter.diagnosis.use", when=lambda s, m: s.code(6) == "A"
        ),  # DiagnosisType: A only
        f15=M("Encounter.diagnosis.rank"),
        f16=M("Encounter.diagnosis.condition"),
        f19=M("Encounter.diagnosis.condition"),
        f20=M("Encounter.diagnosis.condition"),
        f21=M("Encounter.diagnosis.condition"),
        f22=N("see DG1[Condition] DG1-22"),
    ),
    "PR1[Procedure]": rows(
        "1 2 9 10 13 14 17 18 20-22 24",
        f3=M("Procedure.code"),
        f4=M("Procedure.code.text", when=lambda s, m: not s.f(3).c(9)),
        f5=M("Procedure.performedDateTime"),
        f6=M("Procedure.category"),
        f7=M("Procedure.performedPeriod.end"),
        f8=M("Procedure.performer.function"),
        f11=M("Procedure.performer.function"),
        f12=M("Procedure.performer.actor"),
        f15=M("Procedure.reasonCode"),
        f16=M("Procedure.code"),
        f19=M("Procedure.identifier"),
        f23=M("Procedure.location"),
        f25=M("Procedure.partOf"),
    ),
    "IN1[Coverage]": rows(
        "1 3 6-9 14 18-48 50-55",
        f2=M("Coverage.identifier"),
        f4=M("Coverage.payor"),
        f5=M("Organization.address"),
        f10=M("Coverage.subscriberId or Coverage.policyHolder"),  # SN: subscriberId
        f11=M("Coverage.policyHolder"),
        f12=M("Coverage.period.start"),
        f13=M("Coverage.period.end"),
        f15=M("Coverage.type"),
        f16=M("Coverage.subscriber"),
        f17=M("Coverage.relationship"),
        f49=M("Coverage.subscriberId"),
    ),
    "ORC[ServiceRequest]": rows(
        "6 10 11 13 15 17-20 25-27 30-32 34-37",
        f1=M("*.intent"),
        f2=M("*.identifier.type.coding.code=PLAC", when=lambda s, m: not _obr(s, m).raw(2)),
        f3=M("*.identifier.type.coding.code=FILL", when=lambda s, m: not _obr(s, m).raw(3)),
        f4=M("ServiceRequest.requisition or MedicationRequest.groupIdentifier"),
        f5=M("*.status"),
        f7=M("ServiceRequest.occurrence or MedicationRequest.dosageInstruction.timing"),
        f8=M("*.basedOn"),
        f9=M("*.authoredOn"),
        f12=M("*.requester"),
        f14=M(
            f"ServiceRequest.extension.url={EXT}servicerequest-order-callback-phone-number",
            when=lambda s, m: not _obr(s, m).raw(17),
        ),
        f16=M(
            f"ServiceRequest.extension.url={EXT}request-statusReason",
            when=lambda s, m: not s.raw(5),
        ),
        f21=M("PractitionerRole.organization"),
        f22=M("Organization.address"),
        f23=M("Organization.telecom"),
        f24=M("Practitioner.address"),
        f28=M("*.meta.security"),
        f29=M("ServiceRequest.locationCode"),
        f33=M(
            "ServiceRequest.identifier.type.coding.code=PLAC",
            when=lambda s, m: not _obr(s, m).raw(53),
        ),
        f38=M("ServiceRequest.identifier.type.coding.code=FGN"),
    ),
    "ORC[DiagnosticReport]": rows(
        "1 5-15 17-27 29-34",
        f2=M("DiagnosticReport.identifier"),
        f3=M("DiagnosticReport.identifier"),
        f4=M("DiagnosticReport.identifier"),
        f16=M(f"DiagnosticReport.extension.url={EXT}event-statusReason"),
        f28=M("DiagnosticReport.meta.security"),
    ),
    "ORC[Immunization]": rows(
        "1 5-8 10 11 13-27 29-34",
        f2=M("Immunization.identifier.type.coding.code=PLAC"),
        f3=M("Immunization.identifier.type.coding.code=FILL"),
        f4=M("Immunization.identifier"),
        f9=M("Immunization.recorded"),
        f12=M("Immunization.performer.function.coding.code=OP"),
        f28=M("Immunization.meta.security"),
    ),
    "OBR[ServiceRequest]": rows(
        "1 7-10 12 14 15 18-25 28 30 32-45 48-52",
        f2=M("ServiceRequest.identifier.type.coding.code=PLAC"),
        f3=M("ServiceRequest.identifier.type.coding.code=FILL"),
        f4=M("ServiceRequest.code"),
        f5=M("ServiceRequest.priority"),
        f6=M("ServiceRequest.occurrenceDateTime"),
        f11=M("ServiceRequest.intent"),
        f13=N("the R5 supportingInfo extension is not written"),
        f16=M("ServiceRequest.requester", when=lambda s, m: not _orc(s, m).raw(12)),
        f17=M(f"ServiceRequest.extension.url={EXT}servicerequest-order-callback-phone-number"),
        f26=N("basedOn an Observation the message does not carry"),
        f27=M(
            "ServiceRequest.priority",
            when=lambda s, m: not (_orc(s, m).raw(7) or _orc(s, m).raw(6)),
        ),
        f29=M("ServiceRequest.basedOn"),
        f31=M("ServiceRequest.reasonCode"),
        f46=M("ServiceRequest.orderDetail"),
        f47=M("ServiceRequest.orderDetail"),
        f53=M("ServiceRequest.identifier.type.coding.code=PLAC"),
        f54=M("ServiceRequest.basedOn"),
    ),
    "OBR[DiagnosticReport]": rows(
        "1 5 6 9-21 23 26-31 33 36-54",
        f2=M("DiagnosticReport.identifier"),
        f3=M("DiagnosticReport.identifier"),
        f4=M("DiagnosticReport.code"),
        f7=M("DiagnosticReport.effective"),
        f8=M("DiagnosticReport.effectivePeriod.end"),
        f22=M("DiagnosticReport.issued"),
        f24=M("DiagnosticReport.category"),
        f25=M("DiagnosticReport.status"),
        f32=M("DiagnosticReport.resultsInterpreter"),
        f34=M("DiagnosticReport.performer"),
        f35=M("DiagnosticReport.performer"),
    ),
    "OBR[Specimen]": rows(
        "1 3-6 11 12 16-38 40-54",
        f2=N(
            "only when the placer number is the accession number, which no field says",
            when=lambda s, m: False,
        ),
        f7=M("Specimen.collection.collected"),
        f8=M("Specimen.collection.collectedPeriod.end"),
        f9=M("Specimen.collection.quantity"),
        f10=M("Specimen.collection.collector"),
        f14=M("Specimen.receivedTime"),
        f15=M("Specimen.type"),
        f39=M("Specimen.note"),
    ),
    "SPM[Specimen]": rows(
        "1 5 9-11 13 15 16 19 21-23 25 26 28 29",
        f2=M("Specimen.identifier"),
        f3=M("Specimen.parent"),
        f4=M("Specimen.type"),
        f6=M("Specimen.container.additiveCodeableConcept"),
        f7=M("Specimen.collection.method"),
        f8=M("Specimen.collection.bodySite"),
        f12=M("Specimen.collection.quantity"),
        f14=M("Specimen.note"),
        f17=M("Specimen.collection.collected"),
        f18=M("Specimen.receivedTime"),
        f20=M("Specimen.status"),
        f24=M("Specimen.condition"),
        f27=M("Specimen.container.type"),
        f30=M("Specimen.accessionIdentifier"),
        f31=M("Specimen.identifier"),
        f32=M("Specimen.identifier.type.coding.code=STN"),
    ),
    "TQ1[ServiceRequest]": rows(
        "1 12",
        f2=M("ServiceRequest.quantityQuantity"),
        f3=N("repeat patterns are not parsed"),
        f4=N("repeat patterns are not parsed"),
        f5=N("repeat patterns are not parsed"),
        f6=N("durations are not parsed"),
        f7=M("ServiceRequest.occurrenceTiming.repeat.boundsPeriod.start"),
        f8=M("ServiceRequest.occurrenceTiming.repeat.boundsPeriod.end"),
        f9=M("ServiceRequest.priority"),
        f10=N("no extension defined in the guide"),
        f11=M("ServiceRequest.note"),
        f13=N("durations are not parsed"),
        f14=N("repeat patterns are not parsed"),
    ),
    "RXO[MedicationRequest]": rows(
        "6-8 10 15-17 20-24 27-36",
        f1=M("MedicationRequest.medication"),
        f2=M("MedicationRequest.dosageInstruction.doseAndRate.doseRange.low"),
        f3=M("MedicationRequest.dosageInstruction.doseAndRate.doseRange.high"),
        f4=M("MedicationRequest.dosageInstruction.doseAndRate.doseRange.low.unit"),
        f5=M("Medication.form"),
        f9=M("MedicationRequest.substitution"),
        f11=M("MedicationRequest.dispenseRequest.quantity"),
        f12=M("MedicationRequest.dispenseRequest.quantity.unit"),
        f13=M("MedicationRequest.dispenseRequest.numberOfRepeatsAllowed"),
        f14=M("MedicationRequest.requester"),
        f18=M("Medication.ingredient.strength.numerator"),
        f19=M("Medication.ingredient.strength.numerator.unit"),
        f25=M("Medication.ingredient.strength.denominator"),
        f26=M("Medication.ingredient.strength.denominator.unit"),
    ),
    "RXR[MedicationRequest]": rows(
        "3 6",
        f1=M("MedicationRequest.dosageInstruction.route"),
        f2=M("MedicationRequest.dosageInstruction.site"),
        f4=M("MedicationRequest.dosageInstruction.method"),
        f5=M("MedicationRequest.dosageInstruction.additionalInstruction"),
    ),
    "RXA[Immunization]": rows(
        "1 2 4 8 9 11-14 23-26 29",
        f3=M("Immunization.occurrenceDateTime"),
        f5=M("Immunization.vaccineCode"),
        f6=M("Immunization.doseQuantity.value"),
        f7=M("Immunization.doseQuantity.unit"),
        f10=M("Immunization.performer.function.coding.code=AP"),
        f15=M("Immunization.lotNumber"),
        f16=M("Immunization.expirationDate"),
        f17=M("Immunization.manufacturer"),
        f18=M("Immunization.statusReason"),
        f19=M("Immunization.reasonCode"),
        f20=M("Immunization.status", when=lambda s, m: s.code(21) != "D"),
        f21=M("Immunization.status=entered-in-error", when=lambda s, m: s.code(21) == "D"),
        f22=M("Immunization.recorded", when=lambda s, m: s.code(21) == "A"),
        f27=M("Immunization.location"),
        f28=M("Location.address"),
    ),
    "RXR[Immunization]": rows("3-6", f1=M("Immunization.route"), f2=M("Immunization.site")),
    "TXA[DocumentReference]": rows(
        "1 4 5 7 8 11 13-15 20-24 26-28",
        f2=M("DocumentReference.type"),
        f3=M("DocumentReference.content.attachment.contentType"),
        f6=M("DocumentReference.date", when=lambda s, m: len(s.f(6).c(1)) > 8),
        f9=M("DocumentReference.author"),
        f10=M("DocumentReference.authenticator"),
        f12=M("DocumentReference.masterIdentifier"),
        f16=M("DocumentReference.identifier"),
        f17=M("DocumentReference.docStatus"),
        f18=M("DocumentReference.securityLabel"),
        f19=M("DocumentReference.status"),
        f25=M("DocumentReference.description"),
    ),
    "SCH[Appointment]": rows(
        "3-6 10 13-15 17-19 21-24",
        f1=M("Appointment.identifier"),
        f2=M("Appointment.identifier"),
        f7=M(
            "Appointment.reasonCode",
            when=lambda s, m: s.f(7).c(3).upper() in ("HL70276", "HL70277"),
        ),
        f8=M("Appointment.appointmentType", when=lambda s, m: s.f(8).c(3).upper() == "HL70277"),
        f9=M("Appointment.minutesDuration"),
        f11=M("Appointment.start"),
        f12=M("Appointment.participant.type.text=placer contact"),
        f16=M("Appointment.participant.type.text=filler contact"),
        f20=M("Appointment.participant.type.coding.code=enterer"),
        f25=M("Appointment.status"),
        f26=M("Appointment.basedOn"),
        f27=M("Appointment.basedOn"),
    ),
    "AIG[Appointment]": rows(
        "1 2 5-7 10 12-14",
        f3=M("Appointment.participant.actor", when=lambda s, m: s.code(4) in ("L", "LOC")),
        f4=M("Appointment.participant.type"),
        f8=M("Appointment.participant.period.start"),
        f9=N("start offsets are not applied"),
        f11=M("Appointment.participant.period.end"),
    ),
    "AIL[Appointment]": rows(
        "1 2 4 5 8 10-12",
        f3=M("Appointment.participant.actor"),
        f6=M("Appointment.participant.period.start"),
        f7=N("start offsets are not applied"),
        f9=M("Appointment.participant.period.end"),
    ),
    "AIP[Appointment]": rows(
        "1 2 5 8 10 11",
        f3=M("Appointment.participant.actor"),
        f4=M("Appointment.participant.type"),
        f6=M("Appointment.participant.period.start"),
        f7=N("start offsets are not applied"),
        f9=M("Appointment.participant.period.end"),
        f12=M("Appointment.participant.status"),
    ),
    "PRT[PractitionerRole]": rows(
        "1-3 7 10 13 16-22 24",
        f4=N("no PractitionerRole from PRT: the role picks the element the Practitioner fills"),
        f5=M("Practitioner"),
        f6=N("no PractitionerRole from PRT yet"),
        f8=N("no PractitionerRole from PRT yet"),
        f9=N("no PractitionerRole from PRT yet"),
        f11=N("no PractitionerRole from PRT yet"),
        f12=N("no PractitionerRole from PRT yet"),
        f14=N("no PractitionerRole from PRT yet"),
        f15=N("no PractitionerRole from PRT yet"),
        f23=N("no PractitionerRole from PRT yet"),
    ),
}
# maps of resources we do not produce: their facts are the second figure's
OUTSIDE = {
    "PID[Account]": rows("1-17 19-40", f18=N("Account is not produced")),
    "PD1[Observation-LivingWill]": rows("1-6 8-22", f7=N("the living-will Observation")),
    "PV1[Coverage]": rows("1-19 21-54", f20=N("a Coverage from the financial class alone")),
    "IN3[CareTeam]": rows("1-20 22-27", f21=N("CareTeam is not produced")),
}
# PRT roles the order/observation groups map (ORU_R01/OML_O21 maps); others have no target
PRT_ROLES = ("OP", "ARI", "TN", "TR", "PRI", "SC", "PP")


def _prt(seg: Seg, msg) -> bool:
    return seg.code(4) in PRT_ROLES


def _near(seg: Seg, msg, name: str, step: int) -> Seg:
    """The nearest ``name`` segment before (step -1) or after (step 1) ``seg`` within its
    order group (an empty view when there is none)."""
    i = seg.pos + step
    while 0 <= i < len(msg.segments):
        sid = msg.segments[i][:3]
        if sid == name:
            return Seg(msg, i)
        if sid in ("ORC", "PID") and name != "ORC":
            break
        i += step
    return Seg(_EMPTY, 1)


def _place(f) -> bool:
    """A PL naming a place (PL[Location]: .1-.4, .7-.10; .5/.6 map to nothing)."""
    return any(f.c(n) for n in (1, 2, 3, 4, 7, 8, 9, 10))


def _orc(seg: Seg, msg) -> Seg:
    return _near(seg, msg, "ORC", -1)


def _obr(seg: Seg, msg) -> Seg:
    return _near(seg, msg, "OBR", 1)


# per message type: the samples and, per segment, the segment maps its message map applies
_COMMON = {
    "MSH": ["MSH[Bundle]", "MSH[MessageHeader]"],
    "PID": ["PID[Patient]"],
    "PD1": ["PD1[Patient]"],
    "PV1": ["PV1[Encounter]"],
    "PV2": ["PV2[Encounter]"],
    "NK1": ["NK1[RelatedPerson]"],
    "AL1": ["AL1[AllergyIntolerance]"],
    "IN1": ["IN1[Coverage]"],
    "DG1": ["DG1[Condition]"],
}
_OUTSIDE = {
    "PID": ["PID[Account]"],
    "PD1": ["PD1[Observation-LivingWill]"],
    "PV1": ["PV1[Coverage]"],
    "IN3": ["IN3[CareTeam]"],
}
MESSAGES = {
    "ADT": (
        [
            "fhir-ig/IG-test_conversions-ADT_A01.hl7",
            "hl7/adt_a01_v23_python-hl7.hl7",
            "hl7/adt_a01_v26_camel.hl7",
            "hl7/adt_a03_v25_lf_source_hapi.hl7",
            "hl7/adt_a04_v25_python-hl7.hl7",
            "hl7/adt_a04_v26_sparse_msh_camel.hl7",
            "hl7/adt_a08_v23_camel.hl7",
            "hl7/adt_a24_v24_custom_separators_hapi.hl7",
            "own:adt_a40.hl7",
        ],
        _COMMON
        | {
            "EVN": ["EVN[Provenance]"],
            "OBX": ["OBX[Observation]"],
            "DG1": ["DG1[Condition]", "DG1[Encounter]"],
            "PR1": ["PR1[Procedure]"],
            "ROL": [],
            "PRT": [],
        },
    ),
    "ORU": (
        [
            "fhir-ig/IG-test_conversions-ORU_R01.hl7",
            "hl7/oru_r01_v24_python-hl7.hl7",
            "hl7/oru_r01_v24_escapes_hapi.hl7",
        ],
        _COMMON
        | {
            "ORC": ["ORC[DiagnosticReport]", "ORC[ServiceRequest]?PID"],
            "OBR": ["OBR[DiagnosticReport]", "OBR[Specimen]", "OBR[ServiceRequest]?PID"],
            "OBX": ["OBX[Observation]"],
            "NTE@OBX": ["NTE[Observation]"],
            "SPM": ["SPM[Specimen]"],
            "PRT": ["PRT[PractitionerRole]"],
        },
    ),
    "ORM": (
        [
            "fhir-ig/IG-test_conversions-ORM_O01.hl7",
            "hl7/orm_o01_v22_hapi.hl7",
            "hl7/orm_o01_v23_camel.hl7",
            "own:orm_o01_rxo.hl7",
        ],
        _COMMON
        | {
            "ORC": ["ORC[ServiceRequest]"],
            "OBR": ["OBR[ServiceRequest]"],
            "NTE@OBR": ["NTE[Observation]"],
            "NTE@RXO": ["NTE[Observation]"],
            "OBX": ["OBX[Observation]"],
            "RXO": ["RXO[MedicationRequest]"],
            "RXR": ["RXR[MedicationRequest]"],
        },
    ),
    "OML": (
        ["fhir-ig/IG-test_conversions-OML_O21.hl7"],
        _COMMON
        | {
            "ORC": ["ORC[ServiceRequest]"],
            "OBR": ["OBR[ServiceRequest]"],
            "NTE@OBR": ["NTE[Observation]"],
            "OBX": ["OBX[Observation]"],
            "SPM": ["SPM[Specimen]"],
            "PRT": ["PRT[PractitionerRole]"],
        },
    ),
    "VXU": (
        ["fhir-ig/IG-test_conversions-VXU_V04.hl7"],
        _COMMON
        | {
            "ORC": ["ORC[Immunization]"],
            "RXA": ["RXA[Immunization]"],
            "RXR": ["RXR[Immunization]"],
            "OBX": ["OBX[Observation]"],
        },
    ),
    "MDM": (
        ["fhir-ig/IG-test_conversions-MDM_T02.hl7"],
        _COMMON
        | {
            "EVN": ["EVN[Provenance]"],
            "ORC": ["ORC[ServiceRequest]"],
            "TQ1": ["TQ1[ServiceRequest]"],
            "OBR": ["OBR[ServiceRequest]"],
            "TXA": ["TXA[DocumentReference]"],
            "OBX": ["OBX[DocumentReference]"],
        },
    ),
    "SIU": (
        ["fhir-ig/IG-test_conversions-SIU_S12.hl7"],
        _COMMON
        | {
            "PID": ["PID[Patient]", "PID[Appointment]"],
            "SCH": ["SCH[Appointment]"],
            "AIG": ["AIG[Appointment]"],
            "AIL": ["AIL[Appointment]"],
            "AIP": ["AIP[Appointment]"],
            "OBX": ["OBX[Observation]"],
        },
    ),
}
# "?PID": the map applies only to a message with a patient (ORU: the ServiceRequest is made
# "if the receiver needs it", and its subject is 1..1).
# segments of the samples that no message map gives a segment map (no facts): IN2, GT1, UB2,
# Z segments, RGS, MRG (only MRG[Account], MRG-3), an ORU NTE after OBR, PRT roles not listed
CONDITIONS = {"PRT[PractitionerRole]": _prt}


def sample_path(name: str) -> Path:
    return OWN / name[4:] if name.startswith("own:") else SHARED / name
