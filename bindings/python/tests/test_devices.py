import pytest

import flamingo


def test_device_zero_is_cpu():
    devs = flamingo.devices()
    assert len(devs) >= 1 and len(devs) == flamingo.device_count()
    cpu = devs[0]
    assert cpu.index == 0
    assert cpu.backend == flamingo.Backend.CPU
    assert cpu.type == flamingo.DeviceType.CPU
    assert cpu.platform_index == -1 and cpu.device_index == -1
    assert cpu.name
    assert cpu.platform_name == ""
    assert cpu.compute_units >= 1
    assert cpu.memory_bytes > 0


def test_other_devices_are_opencl():
    for d in flamingo.devices()[1:]:
        assert d.backend == flamingo.Backend.OPENCL
        assert d.platform_index >= 0 and d.device_index >= 0


def test_device_out_of_range():
    n = flamingo.device_count()
    with pytest.raises(flamingo.NotFoundError) as e:
        flamingo.device(n)
    assert e.value.status == flamingo.Status.NOT_FOUND and e.value.message
    with pytest.raises(flamingo.NotFoundError):
        flamingo.device(-1)


def test_device_is_frozen():
    d = flamingo.devices()[0]
    with pytest.raises(Exception):
        d.name = "x"
