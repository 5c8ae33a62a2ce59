"""Example python step: glucose reported in mmol/L becomes mg/dL for the EHR.

Used by channels/lab-results.yaml as ``python: transforms.lab:normalize_units``. A step
function gets the message (engine.hl7.message.Message: get, set, delete, add_segment...) and
the run context (ctx.options holds the step's ``options``); return False to filter the
message out, raise to fail it (the message is kept as errored with the reason).
"""

from __future__ import annotations

MG_PER_DL_PER_MMOL_L = 18.016  # glucose, molar mass 180.16 g/mol
GLUCOSE_CODES = {"2345-7", "GLU"}  # LOINC after translation, or the local code


def normalize_units(message, ctx) -> None:
    for i in range(1, len(message.segment_indexes("OBX")) + 1):
        obx = f"OBX[{i}]"
        if message.get(f"{obx}-3.1") not in GLUCOSE_CODES:
            continue
        if (message.get(f"{obx}-6.1") or "").lower() != "mmol/l":
            continue
        try:
            value = float(message.get(f"{obx}-5") or "")
        except ValueError:
            continue  # not a plain number: leave it to the receiving system
        message.set(f"{obx}-5", f"{value * MG_PER_DL_PER_MMOL_L:.0f}")
        message.set(f"{obx}-6", "mg/dL")
        low_high = (message.get(f"{obx}-7") or "").split("-")
        if len(low_high) == 2:
            try:
                low, high = (float(x) * MG_PER_DL_PER_MMOL_L for x in low_high)
            except ValueError:
                continue
            message.set(f"{obx}-7", f"{low:.0f}-{high:.0f}")
