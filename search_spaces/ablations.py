"""The paper's ablations as data: each row of Tables 6, 7 and 8 (Ding et al., CVPR 2021) by name.

A space variant (Tables 6 and 7) is a tuple of ``--space KEY=VALUE`` overrides of the task's preset
(:func:`search_spaces.config.parse_space_overrides` reads them); a plug-in variant (Table 8) names a
:data:`search_spaces.presets.PLUGIN_PRESETS` network per task kind. ``hrnas ablate`` runs them
(``nni_hrnas/ablate.py``); nothing here builds or trains anything.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Table 6, the space ablation: each variant is searched with the same settings. In the paper's order.
SPACE_VARIANTS: dict[str, tuple[str, ...]] = {
    # --- single branch: one branch that downsamples through the multi-branch space's resolutions,
    # then the same head; like the paper's baseline, 3x3 depthwise convs only and no transformer, so
    # that the next row changes the topology alone
    "single_branch": ("layout=single_branch", "kernels=3", "transformer=false"),
    # --- multi-branch, 3x3 depthwise convs only, no transformer
    "multi_branch": ("kernels=3", "transformer=false"),
    # --- + MixConv: 3x3, 5x5 and 7x7 kernel paths, no transformer
    "mixconv": ("kernels=3,5,7", "transformer=false"),
    # --- + transformer: the whole space, the preset's kernels and transformer placement (named, as a
    # task's default space may narrow them: digits_seg's and digits_kp's have 3x3 paths only, no transformer)
    "transformer": ("kernels=3,5,7", "transformer=true"),
}

#: Table 7's transformer size: n = 8 tokens of s x s = 8 x 8
_N8_S8 = ("transformer.tokens=8", "transformer.size=8")

#: Table 7, positional encodings: each is the task's preset at full width, trained with one schedule.
POSITIONAL_VARIANTS: dict[str, tuple[str, ...]] = {
    "no_transformer": ("transformer=false",),
    "sinusoidal": (*_N8_S8, "transformer.pos_encoding=sinusoidal"),
    "learned": (*_N8_S8, "transformer.pos_encoding=learned"),
    "map_encoder": (*_N8_S8, "transformer.pos_encoding=map", "transformer.pos_in_decoder=false"),
    "map_encoder_decoder": (*_N8_S8, "transformer.pos_encoding=map", "transformer.pos_in_decoder=true"),
}


@dataclass(frozen=True)
class PluginVariant:
    """One Table 8 row: a plug-in network per task kind (its classification and its PSP form)."""

    classification: str
    segmentation: str
    transformer: bool

    def model_for(self, kind: str) -> str | None:
        """The :data:`~search_spaces.presets.PLUGIN_PRESETS` name for a task kind, or None if it has none."""
        return {"classification": self.classification, "segmentation": self.segmentation}.get(kind)


#: Table 8, the transformer plugged into MobileNetV2 and ShuffleNetV2 (cls head or PSP head).
PLUGIN_VARIANTS: dict[str, PluginVariant] = {
    "mobilenetv2": PluginVariant("mobilenetv2", "mobilenetv2_psp", False),
    "mobilenetv2_transformer": PluginVariant("mobilenetv2_transformer", "mobilenetv2_psp_transformer", True),
    "shufflenetv2": PluginVariant("shufflenetv2", "shufflenetv2_psp", False),
    "shufflenetv2_transformer": PluginVariant(
        "shufflenetv2_transformer", "shufflenetv2_psp_transformer", True
    ),
}

#: the ablations by ``hrnas ablate`` name
ABLATIONS = {"space": SPACE_VARIANTS, "positional": POSITIONAL_VARIANTS, "plugin": PLUGIN_VARIANTS}
