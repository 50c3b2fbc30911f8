"""Device choice and per-frame failure handling of the model layer."""
import pytest
import torch

from sam_ovseg_ros import model_registry as models
from sam_ovseg_ros.core.weights import WeightsError


def test_auto_falls_back_to_cpu_with_a_warning():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    said = []
    assert models.resolve_device("auto", said.append) == "cpu"
    assert said and "running on the CPU" in said[0]
    with pytest.raises(WeightsError, match="no CUDA device"):
        models.resolve_device("cuda", said.append)
    assert models.resolve_precision("auto", "cpu") is None
    assert models.resolve_precision("auto", "cuda") is torch.bfloat16


def test_cuda_out_of_memory_becomes_a_skipped_frame():
    m = models.Models.__new__(models.Models)  # only the guard is exercised
    with pytest.raises(models.FrameFailure) as err:
        with m._oom_guard("sam"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert err.value.kind == "cuda_oom" and "frame skipped" in str(err.value)
    with pytest.raises(ValueError):  # anything else is not swallowed
        with m._oom_guard("sam"):
            raise ValueError("bug")


def test_missing_real_weights_fail_at_startup_naming_the_file(tmp_path):
    from sam_ovseg_ros.core.config import NodeConfig

    cfg = NodeConfig(profile="default", device="cpu", weights_dir=str(tmp_path))
    with pytest.raises(WeightsError, match=r"sam_vit_h_4b8939\.pth.*dl\.fbaipublicfiles\.com"):
        models.build(cfg, log=lambda s: None)


@pytest.mark.dds
def test_node_refuses_to_start_without_weights(rclpy_context, tmp_path):
    from rosharness import NodeProcess

    node = NodeProcess("t_noweights", {"profile": "default", "weights_dir": str(tmp_path)}, log_dir=tmp_path)
    node.proc.wait(timeout=120)
    log = node.log()
    assert node.proc.returncode == 1
    assert "sam_vit_h_4b8939.pth" in log and "https://dl.fbaipublicfiles.com/segment_anything/" in log
    node.stop()
