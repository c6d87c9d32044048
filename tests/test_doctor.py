"""`labkit.doctor()` is the function every time it is called, also after its module has been imported."""
import importlib

import labkit


def test_doctor_callable_twice_in_one_process(capsys):
    first = labkit.doctor(check_network=False)
    importlib.import_module("labkit.tools.envcheck")  # importing the module must not replace the function
    second = labkit.doctor(check_network=False, print_report=False)
    assert callable(labkit.doctor) and labkit.doctor is importlib.import_module("labkit.tools.envcheck").doctor
    assert first["versions"] == second["versions"] and first["online"] is None
    assert capsys.readouterr().out.startswith("labkit doctor")
    from labkit import doctor

    assert doctor(check_network=False, print_report=False)["device"] == first["device"]
