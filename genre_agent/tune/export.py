"""Write a trained LoRA as a GGUF adapter that llama.cpp loads (`Llama(lora_path=...)`).

The layout is the one llama.cpp's `convert_lora_to_gguf.py` writes: `general.type = adapter`,
`adapter.type = lora`, `adapter.lora.alpha`, and for each adapted weight `<gguf name>.lora_a` (rank x in) and
`<gguf name>.lora_b` (out x rank), stored as f16. Only projections whose rows llama.cpp keeps in the
Hugging Face order are adapted (value, attention output, MLP), so no weight permutation is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genre_agent.errors import ConfigError

ADAPTABLE = ("v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def write_lora_gguf(path: Path, architecture: str, blocks: int, alpha: float,
                    tensors: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """`tensors` maps a Hugging Face weight name (`model.layers.3.self_attn.v_proj.weight`) to its LoRA
    (A: rank x in, B: out x rank). Written to a temporary file and moved into place."""
    import gguf

    arch = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}.get(architecture)
    if arch is None:
        raise ConfigError(f"llama.cpp has no architecture named '{architecture}'.")
    names = gguf.get_tensor_name_map(arch, blocks)
    tmp = path.with_suffix(".partial")
    writer = gguf.GGUFWriter(str(tmp), architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for hf_name, (a, b) in sorted(tensors.items()):
        if not any(f".{m}." in hf_name for m in ADAPTABLE):
            raise ConfigError(f"{hf_name}: only {', '.join(ADAPTABLE)} can be adapted without permuting rows.")
        name = names.get_name(hf_name, try_suffixes=(".weight",))
        if name is None:
            raise ConfigError(f"{hf_name}: no llama.cpp tensor of the {architecture} architecture matches it.")
        writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a, dtype=np.float16))
        writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
