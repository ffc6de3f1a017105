"""gsam import-reference: checkpoints of the official G-SAM code become gsam runs.

The reference code is not in this repository. `reference_state_dict` below writes, from
its public source, the keys and shapes its training script saves for vit_b: its image
encoder (a whole torchvision ResNet-101 as `cnn_embed.backbone`, plus the aliases
`conv1`, `bn1`, `res2..res4`, and `conv_f`), SAM's prompt encoder, the PEG-style
`positional_encoder` and the decoder with its IoU head and tokens.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
import torchvision
import yaml
from click.testing import CliRunner
from segment_anything.modeling.prompt_encoder import PromptEncoder
from segment_anything.modeling.transformer import TwoWayTransformer

from gsam.model.checkpoint import load_gsam_checkpoint
from gsam.model.reference import REFERENCE_MEAN, REFERENCE_STD, ReferenceImportError, import_reference, our_name

DIM, DEPTH, HEADS, GLOBAL = 768, 12, 12, (2, 5, 8, 11)


def _prefixed(prefix: str, module: torch.nn.Module) -> dict[str, torch.Size]:
    return {prefix + k: v.shape for k, v in module.state_dict().items()}


def reference_shapes(num_classes: int) -> dict[str, torch.Size]:
    """Keys and shapes of a vit_b GSAM state dict saved by the reference's train.py (-encoder_input_size 256)."""
    shapes: dict[str, torch.Size] = {}
    enc = "image_encoder."
    resnet = torchvision.models.resnet101()
    shapes.update(_prefixed(enc + "cnn_embed.backbone.", resnet))
    for alias, layer in [("conv1", resnet.conv1), ("bn1", resnet.bn1), ("res2", resnet.layer1),
                         ("res3", resnet.layer2), ("res4", resnet.layer3)]:
        shapes.update(_prefixed(f"{enc}cnn_embed.{alias}.", layer))
    s = torch.Size
    shapes[enc + "cnn_embed.conv_f.weight"] = s([DIM, 1024, 1, 1])
    shapes[enc + "patch_embed.proj.weight"], shapes[enc + "patch_embed.proj.bias"] = s([DIM, 3, 16, 16]), s([DIM])
    shapes[enc + "pos_embed.conv.weight"], shapes[enc + "pos_embed.conv.bias"] = s([DIM, 1, 3, 3]), s([DIM])
    hidden = DIM // 4
    for i in range(DEPTH):
        b = f"{enc}blocks.{i}."
        rows = 63 if i in GLOBAL else 27  # global: 2 * (256 // (256 // 32)) - 1; window 14: 27
        for name, shape in {
            "norm1.weight": [DIM], "norm1.bias": [DIM], "norm2.weight": [DIM], "norm2.bias": [DIM],
            "attn.qkv.weight": [3 * DIM, DIM], "attn.qkv.bias": [3 * DIM], "attn.proj.weight": [DIM, DIM],
            "attn.proj.bias": [DIM], "attn.rel_pos_h": [rows, DIM // HEADS], "attn.rel_pos_w": [rows, DIM // HEADS],
            "mlp.lin1.weight": [4 * DIM, DIM], "mlp.lin1.bias": [4 * DIM], "mlp.lin2.weight": [DIM, 4 * DIM],
            "mlp.lin2.bias": [DIM], "MLP_Adapter.D_fc1.weight": [hidden, DIM], "MLP_Adapter.D_fc1.bias": [hidden],
            "MLP_Adapter.D_fc2.weight": [DIM, hidden], "MLP_Adapter.D_fc2.bias": [DIM],
            **{f"MLP_Adapter.aspp.convs.{j}.conv.weight": [hidden, hidden, 3, 3] for j in range(4)},
            "MLP_Adapter.aspp.convs.4.conv.weight": [hidden, hidden, 1, 1],
        }.items():
            shapes[b + name] = s(shape)
        if i in GLOBAL:
            mid = DIM // 8
            for name, shape in {
                "conv.0.weight": [mid, DIM, 1, 1], "conv.1.weight": [mid], "conv.1.bias": [mid],
                "conv.3.weight": [mid, 1, 3, 3], "conv.4.weight": [mid], "conv.4.bias": [mid],
                "conv.6.weight": [DIM, mid, 1, 1], "conv.7.weight": [DIM], "conv.7.bias": [DIM],
                "se.fc1.weight": [DIM // 4, DIM], "se.fc1.bias": [DIM // 4], "se.fc2.weight": [DIM, DIM // 4],
                "se.fc2.bias": [DIM],
            }.items():
                shapes[b + "refine_Adapter." + name] = s(shape)
    for name, shape in {"neck.0.weight": [256, DIM, 1, 1], "neck.1.weight": [256], "neck.1.bias": [256],
                        "neck.2.weight": [256, 256, 3, 3], "neck.3.weight": [256], "neck.3.bias": [256],
                        "input_Adapter.D_fc1.weight": [hidden, DIM], "input_Adapter.D_fc1.bias": [hidden],
                        "input_Adapter.D_fc2.weight": [DIM, hidden], "input_Adapter.D_fc2.bias": [DIM]}.items():
        shapes[enc + name] = s(shape)
    shapes.update(_prefixed("prompt_encoder.", PromptEncoder(embed_dim=256, image_embedding_size=(32, 32),
                                                             input_image_size=(256, 256), mask_in_chans=16)))
    shapes["positional_encoder.proj.0.weight"], shapes["positional_encoder.proj.0.bias"] = s([256, 1, 3, 3]), s([256])
    dec = "mask_decoder."
    shapes.update(_prefixed(dec + "transformer.", TwoWayTransformer(depth=2, embedding_dim=256, num_heads=8,
                                                                     mlp_dim=2048)))
    binary = num_classes == 2
    shapes[dec + "iou_token.weight"] = s([1 if binary else num_classes, 256])
    shapes[dec + "mask_tokens.weight"] = s([4 if binary else 4 * num_classes + 1, 256])
    for name, shape in {"0.weight": [256, 64, 2, 2], "0.bias": [64], "1.weight": [64], "1.bias": [64],
                        "3.weight": [64, 32, 2, 2], "3.bias": [32]}.items():
        shapes[dec + "output_upscaling." + name] = s(shape)
    for i in range(4 if binary else num_classes):
        for j, out in enumerate([256, 256, 32]):
            shapes[f"{dec}output_hypernetworks_mlps.{i}.layers.{j}.weight"] = s([out, 256])
            shapes[f"{dec}output_hypernetworks_mlps.{i}.layers.{j}.bias"] = s([out])
    for j, out in enumerate([256, 256, 4]):
        shapes[f"{dec}iou_prediction_head.layers.{j}.weight"] = s([out, 256])
        shapes[f"{dec}iou_prediction_head.layers.{j}.bias"] = s([out])
    return shapes


def reference_state_dict(num_classes: int, data_parallel: bool = False) -> dict[str, torch.Tensor]:
    """Distinct random values per tensor; aliases share their backbone tensor, as in the saved file."""
    gen = torch.Generator().manual_seed(num_classes)
    state: dict[str, torch.Tensor] = {}
    for key, shape in reference_shapes(num_classes).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    aliases = {"conv1": "conv1", "bn1": "bn1", "res2": "layer1", "res3": "layer2", "res4": "layer3"}
    for key in list(state):
        parts = key.split(".")
        if parts[1] == "cnn_embed" and parts[2] in aliases:
            state[key] = state[".".join(parts[:2] + ["backbone", aliases[parts[2]]] + parts[3:])]
    if data_parallel:
        state = {"module." + k: v for k, v in state.items()}
    return state


@pytest.fixture(scope="module")
def reference_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    files = {}
    for num_classes, data_parallel in [(2, True), (3, False)]:
        state = reference_state_dict(num_classes, data_parallel)
        path = root / f"gsam_{num_classes}.pth"
        torch.save(state, path)
        files[num_classes] = (path, {k.removeprefix("module."): v for k, v in state.items()})
    return files


def test_every_reference_key_has_a_place():
    for num_classes in (2, 3):
        for key in reference_shapes(num_classes):
            our_name(key)  # raises KeyError for a key the mapping does not know
    with pytest.raises(KeyError):
        our_name("image_encoder.blocks.0.attn.lora_a.weight")


def _adapter(x, ref, prefix):
    return x + F.linear(F.gelu(F.linear(x, ref[prefix + "D_fc1.weight"], ref[prefix + "D_fc1.bias"])),
                        ref[prefix + "D_fc2.weight"], ref[prefix + "D_fc2.bias"])


def _ms_adaptformer(x, ref, prefix, dilations=(12, 24, 36)):
    """The reference's MSAdaptFormer, written from its description: fc1, GELU, five ReLU branches + residual, fc2."""
    h = F.gelu(F.linear(x, ref[prefix + "D_fc1.weight"], ref[prefix + "D_fc1.bias"])).permute(0, 3, 1, 2)
    out = h + F.relu(F.conv2d(h, ref[prefix + "aspp.convs.0.conv.weight"], padding=1))
    for j, d in enumerate(dilations, start=1):
        out = out + F.relu(F.conv2d(h, ref[prefix + f"aspp.convs.{j}.conv.weight"], padding=d, dilation=d))
    pooled = F.relu(F.conv2d(h.mean(dim=(2, 3), keepdim=True), ref[prefix + "aspp.convs.4.conv.weight"]))
    out = out + pooled.expand_as(h)
    return F.linear(out.permute(0, 2, 3, 1), ref[prefix + "D_fc2.weight"], ref[prefix + "D_fc2.bias"])


@pytest.mark.slow
@pytest.mark.parametrize("num_classes", [2, 3])
def test_import_puts_every_tensor_in_place(tmp_path, reference_files, num_classes):
    path, ref = reference_files[num_classes]
    run = import_reference(path, num_classes, tmp_path / "run", log=lambda msg: None)
    model, payload = load_gsam_checkpoint(run / "best.pt")
    config = yaml.safe_load((run / "config.yaml").read_text())["model"]
    ours = model.state_dict()
    # Normalization: the reference's data-loader constants, on the 0..255 scale.
    assert config["pixel_mean"] == pytest.approx([255 * m for m in REFERENCE_MEAN])
    assert model.pixel_std.flatten().tolist() == pytest.approx([255 * s for s in REFERENCE_STD])
    assert model.config.num_classes == (1 if num_classes == 2 else num_classes)
    # Renamed tensors, BatchNorm statistics and rel-pos tables land where they belong.
    enc = "image_encoder."
    for theirs, mine in [
        ("cnn_embed.res2.0.conv1.weight", "cnn_embed.layer1.0.conv1.weight"),
        ("cnn_embed.res4.22.bn3.running_var", "cnn_embed.layer3.22.bn3.running_var"),
        ("cnn_embed.backbone.bn1.running_mean", "cnn_embed.bn1.running_mean"),
        ("cnn_embed.conv_f.weight", "cnn_embed.proj.weight"),
        ("pos_embed.conv.weight", "peg.proj.weight"),
        ("blocks.5.attn.rel_pos_h", "blocks.5.attn.rel_pos_h"),
        ("blocks.4.attn.rel_pos_w", "blocks.4.attn.rel_pos_w"),
        ("blocks.11.refine_Adapter.se.fc2.weight", "blocks.11.refine_adapter.se.fc2.weight"),
    ]:
        assert torch.equal(ours[enc + mine], ref[enc + theirs]), theirs
    for theirs, mine in [("positional_encoder.proj.0.weight", "pos_encoder.proj.weight"),
                         ("prompt_encoder.no_mask_embed.weight", "no_mask_embed.weight"),
                         ("mask_decoder.iou_token.weight", "mask_decoder.iou_token.weight"),
                         ("mask_decoder.mask_tokens.weight", "mask_decoder.mask_tokens.weight")]:
        assert torch.equal(ours[mine], ref[theirs]), theirs
    assert "mask_decoder.output_hypernetworks_mlps.1.layers.0.weight" in ours or num_classes == 2
    # Every tensor of ours came from the file (values are distinct per tensor).
    by_value = {(tuple(v.shape), float(v.flatten()[0])) for v in ref.values() if v.numel()}
    assert all((tuple(v.shape), float(v.flatten()[0])) in by_value for v in ours.values() if v.numel())
    # Modules compute the reference's function with the tensors set.
    torch.manual_seed(0)
    x = torch.randn(1, 6, 9, 768)
    with torch.no_grad():
        torch.testing.assert_close(model.image_encoder.input_adapter(x), _adapter(x, ref, enc + "input_Adapter."))
        torch.testing.assert_close(model.image_encoder.blocks[3].mlp_adapter(x),
                                   _ms_adaptformer(x, ref, enc + "blocks.3.MLP_Adapter."), rtol=1e-4, atol=1e-5)
        logits = model(torch.rand(1, 3, 72, 100) * 255)
    assert logits.shape == (1, model.config.num_classes, 72, 100) and torch.isfinite(logits).all()
    assert payload["source"]["sha256"] and payload["classes"]["names"]


@pytest.mark.slow
def test_bad_reference_files_fail_in_one_line(tmp_path, reference_files):
    path, ref = reference_files[3]
    cases = {}
    missing = dict(ref)
    del missing["image_encoder.blocks.7.MLP_Adapter.D_fc2.bias"]
    cases["missing"] = (missing, "missing 1 tensor(s), first image_encoder.blocks.7.mlp_adapter.fc2.bias")
    unknown = dict(ref, **{"image_encoder.blocks.0.attn.lora.weight": torch.zeros(2)})
    cases["unknown"] = (unknown, "unknown key 'image_encoder.blocks.0.attn.lora.weight'")
    shaped = dict(ref, **{"image_encoder.neck.1.weight": torch.zeros(128)})
    cases["shape"] = (shaped, "image_encoder.neck.1.weight has shape [128], expected [256]")
    cases["sam"] = ({"image_encoder.pos_embed": torch.zeros(1, 64, 64, 768)}, "not a G-SAM reference checkpoint")
    for name, (state, expected) in cases.items():
        bad = tmp_path / f"{name}.pth"
        torch.save(state, bad)
        with pytest.raises(ReferenceImportError, match=re.escape(expected)) as err:
            import_reference(bad, 3, tmp_path / f"run_{name}", log=lambda msg: None)
        assert "\n" not in str(err.value) and not (tmp_path / f"run_{name}").exists()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(ReferenceImportError, match="not a readable PyTorch checkpoint"):
        import_reference(truncated, 3, tmp_path / "run_truncated", log=lambda msg: None)
    with pytest.raises(ReferenceImportError, match="trained with --num_classes 3, not --classes 5"):
        import_reference(path, 5, tmp_path / "run_classes", log=lambda msg: None)
    with pytest.raises(ReferenceImportError, match="use --model vit_b"):
        import_reference(path, 3, tmp_path / "run_model", model="vit_l", log=lambda msg: None)
    assert not list(tmp_path.glob("run_*")) and not list(tmp_path.glob(".run_*"))


@pytest.mark.slow
def test_cli_import_then_export(tmp_path, reference_files):
    from gsam.cli import cli as main

    path, _ = reference_files[2]
    result = CliRunner().invoke(main, ["import-reference", str(path), "--classes", "2", "--out",
                                       str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "config.yaml").is_file()
    exported = CliRunner().invoke(main, ["export", "onnx", str(tmp_path / "run"), "--out", str(tmp_path / "m.onnx"),
                                         "--exporter", "torchscript", "--verify-sizes", "40x56,72x48"])
    assert exported.exit_code == 0, exported.output  # verified against PyTorch at sizes the trace never saw
    again = CliRunner().invoke(main, ["import-reference", str(path), "--classes", "2", "--out",
                                      str(tmp_path / "run")])
    assert again.exit_code != 0 and "already exists" in again.output and len(again.output.strip().splitlines()) == 1
