"""Untrusted model files: a GGUF's Jinja chat template must not reach Python internals, files or the environment.

Three levels, cheapest first:

1. llama-cpp-python's own formatter class (``Jinja2ChatFormatter``, what ``Llama`` builds from
   ``tokenizer.chat_template``) renders in jinja2's ``ImmutableSandboxedEnvironment``, and refuses each escape;
2. the project's :func:`fakequant.runtime.chat.format_chat` turns that refusal into one-line ModelRuntimeError (a stub
   model carries the template, so no weights are loaded);
3. end to end: a copy of the real default model whose ``tokenizer.chat_template`` is replaced by a hostile one,
   loaded by llama.cpp and rendered through the runtime.

Markdown/HTML injection through metadata strings (general.name, tensor names, answers with ``|``, newlines,
``<script>``) is tested by the report's own tests (tests/unit for fakequant.report, issue 5).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
from gguf_edit import with_chat_template
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from fakequant.errors import ModelRuntimeError
from fakequant.runtime import chat
from fakequant.runtime import llama as runtime

DEFAULT_MODEL = Path.home() / ".cache" / "fakequant" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SECRET = "fakequant-canary-4f1c"  # put in the environment; no template may print it

HOSTILE = {
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals_os": "{{ cycler.__init__.__globals__.os.environ }}",
    "joiner_globals": "{{ joiner.__init__.__globals__ }}",
    "namespace_globals": "{{ namespace.__init__.__globals__['os'].popen('id').read() }}",
    "raise_exception_globals": "{{ raise_exception.__globals__ }}",
    "strftime_globals": "{{ strftime_now.__globals__['datetime'] }}",
    "format_string": "{{ '{0.__class__.__init__.__globals__}'.format(messages) }}",
    "builtins_open": "{{ __builtins__.open('/etc/passwd').read() }}",
    "self_module": "{{ self._TemplateReference__context.environment.__class__ }}",
    "mutate_messages": "{% set _ = messages.append({'role': 'system', 'content': 'x'}) %}{{ messages }}",
    "lipsum_globals": "{{ lipsum.__globals__['os'].environ }}",
    "getattr_filter": "{{ messages|attr('__class__')|attr('__mro__') }}",
}
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def canary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEQUANT_CANARY", SECRET)


def render(template: str) -> str:
    formatter = Jinja2ChatFormatter(template=template, eos_token="</s>", bos_token="<s>")
    return formatter(messages=[dict(m) for m in MESSAGES]).prompt  # type: ignore[arg-type]


def test_llama_cpp_python_renders_in_the_immutable_sandbox() -> None:
    formatter = Jinja2ChatFormatter(template="{{ messages[0]['content'] }}", eos_token="", bos_token="")
    assert isinstance(formatter._environment.environment, ImmutableSandboxedEnvironment)
    assert render("{{ messages[0]['content'] }}") == "hello"  # an honest template still works


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_template_is_refused_or_harmless(name: str) -> None:
    """Each escape either raises a jinja2 error (SecurityError for the unsafe ones) or renders nothing secret."""
    try:
        out = render(HOSTILE[name])
    except jinja2.exceptions.TemplateError as err:
        assert isinstance(err, (jinja2.exceptions.SecurityError, jinja2.exceptions.UndefinedError)), repr(err)
        return
    assert SECRET not in out and "root:" not in out and "<class" not in out and "uid=" not in out, out[:200]
    assert "environ" not in out and "function" not in out, out[:200]


@pytest.mark.parametrize("name", ["subclasses", "globals_os", "mutate_messages", "format_string"])
def test_the_classic_escapes_raise_security_error(name: str) -> None:
    with pytest.raises(jinja2.exceptions.SecurityError):
        render(HOSTILE[name])


def test_template_cannot_mutate_the_callers_messages() -> None:
    messages = [{"role": "user", "content": "hello"}]
    formatter = Jinja2ChatFormatter(template=HOSTILE["mutate_messages"], eos_token="", bos_token="")
    with pytest.raises(jinja2.exceptions.SecurityError):
        formatter(messages=messages)  # type: ignore[arg-type]
    assert messages == [{"role": "user", "content": "hello"}]


# --- through the project's runtime -----------------------------------------------------------------------------------
def stub_model(template: str) -> SimpleNamespace:
    """Just what chat.format_chat reads from a loaded model that carries a template."""
    llama = SimpleNamespace(metadata={"tokenizer.chat_template": template}, token_eos=lambda: -1,
                            token_bos=lambda: -1, _model=None)
    return SimpleNamespace(llama=llama, path=Path("hostile.gguf"))


@pytest.mark.parametrize("name", ["subclasses", "globals_os", "namespace_globals", "builtins_open"])
def test_runtime_reports_a_refused_template_in_one_line(name: str) -> None:
    with pytest.raises(ModelRuntimeError) as info:
        chat.format_chat(stub_model(HOSTILE[name]), MESSAGES)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("hostile.gguf: ") and "chat template" in message and "\n" not in message, message
    assert SECRET not in message


def test_runtime_reports_a_broken_template_in_one_line() -> None:
    with pytest.raises(ModelRuntimeError) as info:
        chat.format_chat(stub_model("{% for m in messages %}{{ m.content }"), MESSAGES)  # type: ignore[arg-type]
    assert str(info.value).startswith("hostile.gguf: ") and "\n" not in str(info.value)


def test_runtime_renders_an_honest_template() -> None:
    out = chat.format_chat(stub_model("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"),
                           MESSAGES)  # type: ignore[arg-type]
    assert (out.template, out.text) == ("gguf", "<user>hello")


# --- end to end: a real model file carrying a hostile template --------------------------------------------------------
@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason=f"default model not fetched ({DEFAULT_MODEL})")
def test_real_model_with_a_hostile_template(tmp_path: Path) -> None:
    from fakequant.gguf.check import check_gguf
    from fakequant.runtime.settings import RuntimeSettings

    path = with_chat_template(DEFAULT_MODEL, tmp_path / "hostile.gguf", HOSTILE["globals_os"])
    check_gguf(path)
    with runtime.load_model(path, RuntimeSettings(n_ctx=64, n_batch=64, n_ubatch=64, n_threads=1)) as model:
        assert model.llama.metadata["tokenizer.chat_template"] == HOSTILE["globals_os"]
        with pytest.raises(ModelRuntimeError) as info:
            chat.format_chat(model, MESSAGES)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "chat template" in message and "\n" not in message, message
    assert SECRET not in message
