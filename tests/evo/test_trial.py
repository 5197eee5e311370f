"""The contract module: gene declarations, why_refused and the fitness defaults."""

import math

import pytest

from evo.trial import (
    Budget,
    Deprecated,
    Fitness,
    FitnessBase,
    GeneDecl,
    Objective,
    Trial,
    TrialResult,
    ValueKind,
    why_refused,
)

RANK = GeneDecl("r", ValueKind.INT, 64, low=1)
DROPOUT = GeneDecl("lora_dropout", ValueKind.FLOAT, 0.1, low=0.0, high=1.0, high_open=True)
LR = GeneDecl("learning_rate", ValueKind.FLOAT, 2e-4, low=0.0, low_open=True)
CLIP = GeneDecl("max_grad_norm", ValueKind.FLOAT, 0.3)
OPTIM = GeneDecl("optim", ValueKind.CATEGORICAL, "adamw_torch", choices=("adamw_torch", "adafactor"))
FLAG = GeneDecl("use_rslora", ValueKind.BOOL, False)
MODULES = GeneDecl("target_modules", ValueKind.MODULE_LIST, "attention", choices=("attention", "mlp"))
BITS = GeneDecl("bits", ValueKind.CATEGORICAL, 4, choices=(4, 8))


@pytest.mark.parametrize(
    "decl, value",
    [
        (RANK, 1),
        (RANK, 10**6),
        (RANK, 8.0),  # YAML may write an integral float
        (DROPOUT, 0.0),
        (DROPOUT, 0.999),
        (DROPOUT, 0),
        (LR, 1e-9),
        (CLIP, -1.0),
        (CLIP, 0),
        (OPTIM, "adafactor"),
        (FLAG, True),
        (FLAG, False),
        (MODULES, "mlp"),
        (MODULES, ["q_proj", "v_proj"]),
        (MODULES, ("q_proj",)),
        (BITS, 8),
    ],
)
def test_accepted_values(decl, value):
    assert why_refused(decl, value) is None


NOT_MODULES = "must be one of 'attention', 'mlp' or a non-empty list of module names"


@pytest.mark.parametrize(
    "decl, value, problem",
    [
        (RANK, 0, "must be >= 1"),
        (RANK, 1.5, "must be an integer >= 1"),
        (RANK, True, "must be an integer >= 1"),  # a bool is not a number
        (RANK, "64", "must be an integer >= 1"),
        (DROPOUT, 1.0, "must be in [0, 1)"),
        (DROPOUT, -0.1, "must be in [0, 1)"),
        (DROPOUT, math.nan, "must be a finite number in [0, 1)"),
        (LR, 0.0, "must be > 0"),
        (LR, math.inf, "must be a finite number > 0"),
        (CLIP, "0.3", "must be a finite number"),
        (CLIP, None, "must be a finite number"),
        (OPTIM, "sgdd", "must be one of 'adamw_torch', 'adafactor'"),
        (OPTIM, ["adamw_torch"], "must be one of 'adamw_torch', 'adafactor'"),
        (FLAG, 1, "must be true or false"),
        (FLAG, "yes", "must be true or false"),
        (MODULES, "everything", NOT_MODULES),
        (MODULES, [], NOT_MODULES),
        (MODULES, ["q_proj", ""], NOT_MODULES),
        (MODULES, [1, 2], NOT_MODULES),
        (BITS, True, "must be one of 4, 8"),  # True == 1, but is no choice here
    ],
)
def test_refused_values_say_what_is_accepted(decl, value, problem):
    assert why_refused(decl, value) == problem


def test_high_only_and_closed_bounds_read_as_written():
    assert why_refused(GeneDecl("x", ValueKind.FLOAT, 0.0, high=1.0, high_open=True), 1.0) == "must be < 1"
    assert why_refused(GeneDecl("x", ValueKind.INT, 3, low=2, high=8), 9) == "must be in [2, 8]"
    half_open = GeneDecl("x", ValueKind.FLOAT, 0.5, low=0.0, high=1.0, low_open=True)
    assert why_refused(half_open, 0.0) == "must be in (0, 1]"


LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LLAMA_MODULES = GeneDecl(
    "target_modules", ValueKind.MODULE_LIST, "attention", choices=("attention", "mlp"), names=LLAMA_LINEAR
)


def test_module_names_of_the_model_are_accepted_and_others_refused_with_a_suggestion():
    assert why_refused(LLAMA_MODULES, ["q_proj", "down_proj"]) is None
    assert why_refused(LLAMA_MODULES, "mlp") is None  # a named set is a choice, not a module name
    listing = "(its linear modules: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
    assert why_refused(LLAMA_MODULES, ["q_proj", "nope"]) == f"module 'nope' is not in the model {listing}"
    assert (
        why_refused(LLAMA_MODULES, ("q_prj", "c_attn"))  # the first unknown one is named
        == f"module 'q_prj' is not in the model, did you mean 'q_proj'? {listing}"
    )
    assert why_refused(LLAMA_MODULES, ["attention"]).startswith("module 'attention' is not in the model")
    assert why_refused(LLAMA_MODULES, []) == NOT_MODULES  # the shape is checked before the names
    assert why_refused(MODULES, ["anything"]) is None  # no names declared: any names


def test_a_long_list_of_module_names_is_shortened():
    names = tuple(f"layer{i}" for i in range(40))
    decl = GeneDecl("target_modules", ValueKind.MODULE_LIST, "all", choices=("all",), names=names)
    problem = why_refused(decl, ["layer_x"])
    assert problem is not None and "layer11, ... (28 more))" in problem and "layer12" not in problem


def test_a_declaration_must_accept_its_own_default():
    with pytest.raises(ValueError, match="default 0"):
        GeneDecl("r", ValueKind.INT, 0, low=1)
    with pytest.raises(ValueError, match="needs choices"):
        GeneDecl("optim", ValueKind.CATEGORICAL, "adamw_torch")
    with pytest.raises(TypeError, match="ValueKind"):
        GeneDecl("r", "int", 64)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only a module_list gene has names"):
        GeneDecl("optim", ValueKind.CATEGORICAL, "adamw_torch", choices=("adamw_torch",), names=("q_proj",))


class Minimal(FitnessBase):
    objectives = (Objective("loss"),)

    def fingerprint(self) -> str:
        return "minimal"

    def evaluate(self, trial: Trial) -> TrialResult:
        return TrialResult.complete({"loss": 1.0})


def test_the_base_gives_every_optional_capability_a_default():
    fitness = Minimal()
    assert isinstance(fitness, Fitness)
    assert fitness.structural_genes == frozenset() and fitness.intermediate_values is False
    assert dict(fitness.genes) == {} and fitness.describe() == {}
    assert fitness.export_sections({"x": 1, "y": "a"}) == {"other": {"x": 1, "y": "a"}}
    assert Minimal.export_sections({}) == {}  # static: callable without building the fitness
    fitness.close()
    fitness.close()
    assert fitness.evaluate(Trial(0, {}, Budget(), 0)).ok


def test_the_base_still_requires_the_essentials():
    class NoEvaluate(FitnessBase):
        objectives = (Objective("loss"),)

        def fingerprint(self) -> str:
            return "x"

    with pytest.raises(TypeError, match="evaluate"):
        NoEvaluate()  # type: ignore[abstract]


def test_check_value_is_the_deprecated_name_of_why_refused():
    import evo

    decl = GeneDecl("x", ValueKind.INT, 3, low=2, high=8)
    with pytest.warns(Deprecated, match="why_refused"):
        assert evo.check_value(decl, 9) == why_refused(decl, 9) == "must be in [2, 8]"
