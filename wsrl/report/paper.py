"""The paper's numbers and what each report table shows: its datasets, columns, compared pairs and the expert
levels its scores are measured against. Tables 1-3 are the paper's; 4 (the LDS ablation) and 5 (the weighting
schemes of the field) are this project's."""

from __future__ import annotations

import json

from wsrl.datasets.behavior.locations import ASSETS
from wsrl.report import tables

GROUPS = {  # the paper's row order
    "medium_replay": ["halfcheetah_medium_replay", "hopper_medium_replay", "walker2d_medium_replay"],
    "medium": ["halfcheetah_medium", "hopper_medium", "walker2d_medium"],
    "medium_expert": ["halfcheetah_medium_expert", "hopper_medium_expert", "walker2d_medium_expert"],
}

# Column name -> (method, sampler, policy, LDS label) of the runs behind it; a label of None matches any run.
_UNCOND = "unconditional"
_TRAJ = "trajectory_return"
COLUMNS: dict[int, dict[str, tuple[str, str, str, str | None]]] = {
    1: {"Old Return": ("rvs_r", "uniform", "diag_gaussian", None), "New Return": ("rvs_r", "uniform", _UNCOND, None)},
    2: {"BC": ("bc", "uniform", _UNCOND, None), "Own Return": ("rvs_r", "uniform", _UNCOND, None),
        "IR": ("rvs_r", "lds", _UNCOND, None), "BC + LDS": ("bc", "lds", _UNCOND, None)},
    3: {"BC": ("bc", "uniform", _UNCOND, None), "RvS-R": ("rvs_r", "uniform", _UNCOND, None)},
    # Table 4: RvS-R with LDS on each label, in the loss (sampler=lds) or the draw (lds_sampling); "uniform" is
    # the reference without weights (Own Return), run into the same sweep (experiments/README.md)
    4: {"uniform": ("rvs_r", "uniform", _UNCOND, None),
        **{f"{name} / {where}": ("rvs_r", sampler, _UNCOND, target)
           for where, sampler in (("loss", "lds"), ("draw", "lds_sampling"))
           for name, target in (("return", "trajectory_return"), ("return-to-go", "return_to_go"),
                                ("action", "action"))}},
    # Table 5: the weighting schemes of the field beside LDS (the new samplers weight the draw, lds the
    # loss). RvS-R's cwbc is the published one, with CWBC's conservative loss; "cwbc weights only" leaves the loss
    # out. lds_rw's two controls share its place (the draw): "lds draw" (LDS on the return alone) and rw alone.
    # "lds rtg draw" is Table 4's best LDS, on the return-to-go in the draw.
    5: {**{f"BC {s}": ("bc", s, _UNCOND, _TRAJ if s == "lds" else None)
           for s in ("uniform", "topk", "rw", "aw", "cwbc", "lds")},
        "RvS-R uniform": ("rvs_r", "uniform", _UNCOND, None), "RvS-R rw": ("rvs_r", "rw", _UNCOND, None),
        "RvS-R cwbc": ("rvs_r", "cwbc_conservative", _UNCOND, None),
        "RvS-R cwbc weights only": ("rvs_r", "cwbc", _UNCOND, None),
        "RvS-R lds": ("rvs_r", "lds", _UNCOND, _TRAJ), "RvS-R lds draw": ("rvs_r", "lds_sampling", _UNCOND, _TRAJ),
        "RvS-R lds rtg draw": ("rvs_r", "lds_sampling", _UNCOND, "return_to_go"),
        "RvS-R lds_rw": ("rvs_r", "lds_rw", _UNCOND, None)},
}

# The claims each table tests, as column X -> column Y: per dataset the difference of means with Welch's interval
# and test (a mark on X's cell where it is significant after Holm's correction), and P(X > Y) over all runs.
# Table 1: the new policy over the old DiagGaussianActor; Table 2: RvS-R over BC, IR against RvS-R, LDS weights
# without the return input; Table 4: each label and place of the weights against the paper's (trajectory return,
# in the loss), and that against no weights.
COMPARISONS: dict[int, dict[str, str]] = {
    1: {"New Return": "Old Return"},
    2: {"Own Return": "BC", "IR": "Own Return", "BC + LDS": "BC"},
    3: {"RvS-R": "BC"},
    4: {"return / loss": "uniform", **{c: "return / loss" for c in list(COLUMNS[4])[2:]}},
    5: {c: f"{c.split()[0]} uniform" for c in COLUMNS[5] if not c.endswith(" uniform")},  # P(X > uniform), each X
}
# A table's reference column: every other column is also compared with it (its reading asks "better than no
# weights?"); these comparisons are in the differences and P(X > Y), not in the marks on the cells.
REFERENCE: dict[int, str] = {4: "uniform"}
# Further pairs, in the differences and P(X > Y) only: Table 5's lds_rw against its two controls in the draw (does
# LDS add anything to rw, and rw to LDS?).
CONTROLS: dict[int, list[tuple[str, str]]] = {5: [("RvS-R lds_rw", "RvS-R lds draw"), ("RvS-R lds_rw", "RvS-R rw")]}
# Tables too wide for one: printed in halves, the columns whose name starts with each (Table 5: BC's, then RvS-R's).
HALVES: dict[int, tuple[str, ...]] = {5: ("BC", "RvS-R")}
ALPHA = 0.05  # a difference is marked where its Holm-adjusted Welch p-value is below this
# The datasets each table is about, where not all nine: pooled runs of other datasets are left out.
DATASETS: dict[int, list[str]] = {1: GROUPS["medium_expert"], 4: GROUPS["medium_expert"],
                                  5: GROUPS["medium_replay"] + GROUPS["medium_expert"]}

# The paper's numbers (its full citation and these tables: docs/references.md): Table 1 (Old/New Return),
# Table 2 (BC, Own Return, IR with their Std columns), Table 3 (ours and the SOTA RvS paper's BC and RvS-R).
# Keys: dataset -> column -> (score, std).
_T2 = {
    "halfcheetah_medium_replay": ((31.00, 7.40), (21.00, 7.69), (10.10, 5.90)),
    "hopper_medium_replay": ((18.10, 5.97), (35.50, 6.49), (33.50, 5.85)),
    "walker2d_medium_replay": ((10.20, 5.45), (33.00, 16.74), (37.00, 17.35)),
    "halfcheetah_medium": ((42.01, 3.23), (42.10, 3.02), (42.00, 3.02)),
    "hopper_medium": ((38.01, 2.99), (44.00, 3.38), (43.50, 3.70)),
    "walker2d_medium": ((67.40, 10.77), (73.00, 9.55), (70.24, 12.40)),
    "halfcheetah_medium_expert": ((62.00, 20.55), (92.00, 3.66), (92.30, 3.20)),
    "hopper_medium_expert": ((40.00, 7.25), (83.00, 14.16), (64.00, 15.24)),
    "walker2d_medium_expert": ((91.30, 7.18), (106.50, 0.54), (106.00, 3.20)),
}
_SOTA = {  # Table 3: BC (SOTA), RvS-R (SOTA) from Emmons et al., as quoted by the paper
    "halfcheetah_medium_replay": (36.6, 38.0), "hopper_medium_replay": (18.1, 73.5),
    "walker2d_medium_replay": (26.0, 60.6), "halfcheetah_medium": (42.6, 41.6), "hopper_medium": (52.9, 60.0),
    "walker2d_medium": (75.3, 71.7), "halfcheetah_medium_expert": (55.2, 92.2),
    "hopper_medium_expert": (52.5, 101.7), "walker2d_medium_expert": (107.5, 106.0),
}
PAPER: dict[int, dict[str, dict[str, tuple[float, float | None]]]] = {
    1: {"halfcheetah_medium_expert": {"Old Return": (43, None), "New Return": (91.68, None)},
        "hopper_medium_expert": {"Old Return": (48, None), "New Return": (82.89, None)},
        "walker2d_medium_expert": {"Old Return": (47, None), "New Return": (106.45, None)}},
    2: {env: dict(zip(("BC", "Own Return", "IR"), row, strict=True)) for env, row in _T2.items()},
    3: {env: {"BC": (_T2[env][0][0], None), "RvS-R": (_T2[env][1][0], None), "BC (SOTA)": (sota[0], None),
              "RvS-R (SOTA)": (sota[1], None)} for env, sota in _SOTA.items()},
    4: {},  # not in the paper
    5: {},
}
# The expert level of the paper's data: D4RL v2's expert datasets average about these normalized scores.
D4RL_EXPERT = {"halfcheetah": 88.0, "hopper": 108.0, "walker2d": 107.0}


def pairs(number: int) -> list[tuple[str, str]]:
    """Every (X, Y) table ``number`` compares: ``COMPARISONS``, then each other column against its
    ``REFERENCE``, then its ``CONTROLS``."""
    out = list(COMPARISONS[number].items())
    ref = REFERENCE.get(number)
    out += [(c, ref) for c in COLUMNS[number] if ref and c != ref and (c, ref) not in out]
    return out + CONTROLS.get(number, [])


def layout(number: int) -> tables.Layout:
    """What table ``number`` shows (``wsrl.report.tables``)."""
    return tables.Layout(number, list(COLUMNS[number]), COMPARISONS[number], pairs(number),
                         list(dict.fromkeys(k for env in PAPER[number].values() for k in env)), ALPHA,
                         HALVES.get(number, ()))


def expert_level(robot: str, source: str) -> float | None:
    """The normalized score of the expert behind a dataset of ``source``: for the generated suite, the 50-episode
    evaluation of the robot's chosen expert snapshot in its committed manifest
    (``wsrl/assets/behavior/<robot>/manifest.json``, ``chosen_scores.expert``); for D4RL's files, D4RL's expert
    data (``D4RL_EXPERT``); None otherwise."""
    if source == "d4rl":
        return D4RL_EXPERT.get(robot)
    path = ASSETS / robot / "manifest.json"
    if source != "generated" or not path.exists():
        return None
    return json.loads(path.read_text()).get("chosen_scores", {}).get("expert", {}).get("normalized_mean")
