"""The words the suite, the sweeps and the reports share: statuses, decisions, check categories, artifact names,
report languages and the acceptance tests' names. Defined once here, in the spirit of gguf-py's ``constants.py``."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """The verdict of one check."""

    PASS = "pass"
    CAUTION = "caution"  # within the acceptable bound, outside the ideal one
    FAIL = "fail"  # a must-pass failure, or a regression against the baseline
    LIMITATION = "limitation"  # the baseline fails it too: the model's limit, not the quantization's
    INCONCLUSIVE = "inconclusive"  # nothing changed, or the effect is below what the measurement resolves
    ERROR = "error"  # the check could not run (bad input, crash)


class Decision(StrEnum):
    """The go/no-go decision of one experiment."""

    GO = "GO"
    CAUTION = "CAUTION"
    STOP = "STOP"
    INCONCLUSIVE = "INCONCLUSIVE"


# Check categories, in the order reports list them; an experiment's `checks` is a subset of these.
CATEGORIES = ("must_pass", "numerical", "perplexity", "conversation", "speed")
MUST_PASS, NUMERICAL, PERPLEXITY, CONVERSATION, SPEED = CATEGORIES
# The must-pass checks' ids, as the acceptance tests record them (numerical and perplexity are one check each, the
# conversation checks conversation[<prompt id>]).
MUST_PASS_CHECKS = ("build", "format", "load", "finite", "original_unchanged")


class Artifact(StrEnum):
    """Names of the measurements an experiment records (``<report_dir>/<experiment>/.data/<name>.json``) and of the
    blocks of its report.json."""

    EXPERIMENT = "experiment"
    PROVENANCE = "provenance"
    NUMERICAL = "numerical_analysis"
    FORMAT_CHECK = "format_check"
    LOAD = "load"
    PERPLEXITY = "perplexity_comparison"
    CONVERSATIONS = "conversations"
    BATTERY = "conversation_battery"
    SPEED = "speed"


LANGS = ("en", "zh-TW")  # languages of the Markdown and HTML reports

# The acceptance tests of one experiment, in the order they run: build first, the integrity and decision checks last.
TEST_ORDER = ("test_must_pass_build", "test_must_pass_format", "test_must_pass_load", "test_must_pass_finite",
              "test_numerical", "test_perplexity", "test_conversation", "test_conversation_battery", "test_speed",
              "test_original_unchanged", "test_expected_decision")
# The check each acceptance test records: its outcome's id and category ("{prompt}": the prompt id of the test's
# parameters). What a complete run of an experiment records, and what a test that crashed failed to record.
CHECK_OF_TEST = {
    "test_must_pass_build": ("build", MUST_PASS), "test_must_pass_format": ("format", MUST_PASS),
    "test_must_pass_load": ("load", MUST_PASS), "test_must_pass_finite": ("finite", MUST_PASS),
    "test_original_unchanged": ("original_unchanged", MUST_PASS), "test_numerical": ("numerical", NUMERICAL),
    "test_perplexity": ("perplexity", PERPLEXITY), "test_conversation": ("conversation[{prompt}]", CONVERSATION),
    "test_conversation_battery": ("conversation[battery]", CONVERSATION),
    "test_speed": ("speed", SPEED),
}
TEST_FILES = ("test_acceptance_must_pass.py", "test_acceptance_quality.py", "test_conversation.py",
              "test_acceptance_speed.py", "test_acceptance_decision.py")
