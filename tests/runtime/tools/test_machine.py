"""`runtime.tools.machine`: the description of the machine a measurement ran on."""

import json

from runtime.tools import machine


def test_the_facts_name_the_cpus_the_software_and_the_load():
    facts = json.loads(json.dumps(machine.machine_facts()))
    assert facts["cpu_count"] >= 1 and 1 <= facts["usable_cpus"] <= facts["cpu_count"]
    assert facts["cpu_model"] and facts["python"].count(".") == 2
    assert {"platform", "onnxruntime", "numpy", "opencv", "load_average"} <= facts.keys()


def test_the_load_average_is_three_figures_or_unknown():
    text = machine.load_average()
    assert text == "unknown" or [float(value) for value in text.split(", ")] and text.count(", ") == 2
