"""The training loop's pieces: the fused AdamW takes the steps torch's reference AdamW takes."""

import torch

from camkit.training.loop import adamw


def test_fused_adamw_takes_the_reference_steps():
    torch.manual_seed(0)
    shapes = [(64, 3, 3, 3), (64,), (10, 64)]
    fused_params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    plain_params = [torch.nn.Parameter(p.detach().clone()) for p in fused_params]
    start = [p.detach().clone() for p in fused_params]
    fused = adamw(fused_params, lr=2e-3, weight_decay=0.05)
    plain = torch.optim.AdamW(plain_params, lr=2e-3, weight_decay=0.05, foreach=False)
    assert fused.param_groups[0]["fused"] is True
    for _ in range(5):
        grads = [torch.randn(s) for s in shapes]
        for params, optimizer in ((fused_params, fused), (plain_params, plain)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
    for a, b, before in zip(fused_params, plain_params, start):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert (a - before).abs().max() > 1e-3  # the parameters moved (5 steps of ~2e-3)


def test_bfloat16_is_native_only_where_the_hardware_has_it(monkeypatch):
    from camkit.training import loop

    for avx512_bf16, amx, native in (
        (False, False, False),
        (True, False, True),
        (False, True, True),
    ):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert loop.native_bf16("cpu") is native
    assert loop.native_bf16("meta") is False


def test_bfloat16_is_not_native_where_onednn_is_capped_below_it(monkeypatch):
    from camkit.training import loop

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")  # the AVX2 kernels forced
    assert loop.native_bf16("cpu") is False
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert loop.native_bf16("cpu") is True


def test_the_recipes_train_in_float32_on_a_cpu_that_emulates_bfloat16(monkeypatch):
    from camkit.training.classifier import TrainConfig, resolve_config
    from camkit.training.segmenter import SegConfig

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_config(TrainConfig(pretrained="none")).bf16 is False
    assert resolve_config(TrainConfig(pretrained="none", bf16=True)).bf16 is True  # asked for
    assert SegConfig().bf16 is None  # resolved by train_segmenter on its device
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert resolve_config(TrainConfig(pretrained="none")).bf16 is True


def test_evaluation_takes_class_indices_and_probability_rows():
    from torch.utils.data import DataLoader, TensorDataset

    from camkit.training.loop import evaluate_classifier

    head = torch.nn.Linear(3, 3, bias=False)
    head.weight.data = torch.eye(3)  # logits = inputs: predicts 0, 1, 2
    images = torch.eye(3)
    indices = DataLoader(TensorDataset(images, torch.tensor([0, 1, 0])), batch_size=2)
    rows = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5]])  # all three right
    soft = DataLoader(TensorDataset(images, rows), batch_size=2)
    cpu = torch.device("cpu")
    assert evaluate_classifier(head, indices, cpu)["accuracy"] == 2 / 3
    result = evaluate_classifier(head, soft, cpu)
    assert result["accuracy"] == 1.0 and result["count"] == 3
