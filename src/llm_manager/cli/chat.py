"""`llm-manager chat`: talk to a configuration; every exchange is kept in a conversation.

    llm-manager chat demo "hello"                  # a new conversation
    llm-manager chat demo "and then?" -c           # continue the latest one started here
    llm-manager chat demo                          # an interactive chat (on a terminal)
    llm-manager chat --template greet -v name=Ada  # a one-off call rendered from a template

Replies stream to standard output and nothing else does: the summary (tokens, cost, log and
conversation ids) goes to standard error, so `chat ... > reply.txt` captures only the reply.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import anyio
import typer

from llm_manager.cli._runtime import consoles, fail, money, parse_pairs, print_json, run
from llm_manager.cli.conversations import VIEWER, find_conversation, forget_if_empty
from llm_manager.cli.interactive import ChatOptions, run_interactive
from llm_manager.cli.rendering import result_summary
from llm_manager.cli.templates import parse_variables
from llm_manager.manager import LLMManager
from llm_manager.services.chat import ChatStream
from llm_manager.services.configuration_specs import parse_params
from llm_manager.services.templates import RenderedTemplate
from llm_manager.types import ChatResult, TextDelta


@dataclass(frozen=True, kw_only=True)
class _Said:
    """What a one-shot chat produced: the call's result, and where it was kept."""

    result: ChatResult | None
    streamed: bool
    """Its text is on the terminal already."""
    conversation_id: str | None = None
    template: RenderedTemplate | None = None


def chat(
    configuration: Annotated[
        str | None,
        typer.Argument(
            help="Configuration slug. May be left out with --template: the version's configuration is "
            "used, else the default one.",
            metavar="CONFIGURATION",
            show_default=False,
        ),
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Argument(
            help="What to say; '-' reads it from standard input. Leave it out for an interactive chat.",
            metavar="PROMPT",
            show_default=False,
        ),
    ] = None,
    continue_latest: Annotated[
        bool,
        typer.Option(
            "--continue",
            "-c",
            help="Continue the latest conversation on this configuration started from the command line "
            "(or the library); a new one if there is none.",
        ),
    ] = False,
    conversation: Annotated[
        str | None,
        typer.Option(
            "--conversation",
            metavar="ID",
            help="Continue this conversation (any owner; see `conversations list`); CONFIGURATION must "
            "be the one it uses.",
        ),
    ] = None,
    system: Annotated[
        str | None,
        typer.Option("--system", "-s", help="The system prompt of a new conversation (or one-off call)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Generation parameter override, e.g. temperature=0.2."),
    ] = None,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="Wait for the whole reply.")] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: text, usage, cost, log_id, conversation_id, template (waits for "
            "the whole reply).",
        ),
    ] = False,
    no_save: Annotated[
        bool,
        typer.Option(
            "--no-save", help="A one-off call kept in no conversation (its usage row is still recorded)."
        ),
    ] = False,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            "-i",
            help="Open the interactive chat even when standard input is not a terminal (each line is a "
            "message).",
        ),
    ] = False,
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            "-t",
            metavar="NAME[@LABEL|@VERSION]",
            help="Send this prompt template rendered with --var values instead of a prompt: a one-off "
            "call (kept in no conversation) whose usage row records the template's name and version.",
        ),
    ] = None,
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            "-v",
            help="A template variable, key=value (repeat); text is converted to its declared type.",
        ),
    ] = None,
) -> None:
    """Talk to a configuration: the reply streams to the terminal.

    Every chat is kept in a conversation: a new one, unless -c continues the latest one or
    --conversation names one; its history is sent with each message (fitted to the model's
    context window). Without a prompt, on a terminal, an interactive chat opens: replies
    stream, Ctrl-C stops a reply and keeps what arrived (stored as interrupted, and billed),
    /new starts a new conversation, /help lists the commands, Ctrl-D or /exit leaves.
    """
    overrides = parse_pairs(param or (), option="--param")
    streaming = not (no_stream or as_json)
    if template is not None:
        if prompt is not None:
            raise typer.BadParameter(
                "--template gives the prompt: give at most the CONFIGURATION", param_hint="PROMPT"
            )
        if continue_latest or conversation or interactive:
            raise typer.BadParameter(
                "a template call is one-off: it cannot continue a conversation or be interactive",
                param_hint="--template",
            )
        variables = parse_variables(var or ())
        said = run(
            lambda llm: _template_call(llm, configuration, template, variables, system, overrides, streaming)
        )
        _report(said, as_json)
        return
    if var:
        raise typer.BadParameter("template variables go with --template", param_hint="--var")
    if configuration is None:
        raise typer.BadParameter("give the configuration's slug", param_hint="CONFIGURATION")
    if continue_latest and conversation:
        raise typer.BadParameter("give -c or --conversation, not both", param_hint="--conversation")
    if no_save and (continue_latest or conversation):
        raise typer.BadParameter("--no-save keeps nothing, so it cannot continue a conversation")
    options = ChatOptions(
        configuration=configuration,
        system=system,
        overrides=overrides,
        stream=streaming,
        conversation_id=conversation,
        continue_latest=continue_latest,
    )
    if prompt is None:
        if not (interactive or sys.stdin.isatty()):
            raise typer.BadParameter(
                "no prompt: give one, '-' to read it from standard input, or --interactive for a chat",
                param_hint="PROMPT",
            )
        if as_json or no_save:
            raise typer.BadParameter("--json and --no-save are for one prompt, not an interactive chat")
        run_interactive(options)
        return
    if interactive:
        raise typer.BadParameter("leave the prompt out for an interactive chat", param_hint="--interactive")
    text = sys.stdin.read() if prompt == "-" else prompt
    if not text.strip():
        fail("the prompt must not be empty")
    if no_save:
        said = run(lambda llm: _one_off(llm, configuration, text, system, overrides, streaming))
    else:
        said = run(lambda llm: _converse(llm, options, text))
    _report(said, as_json)


async def _converse(llm: LLMManager, options: ChatOptions, text: str) -> _Said:
    """Send `text` in the conversation the options name (or a new one), streamed or not."""
    parse_params(options.overrides)  # refused by name before a conversation is started
    found = await find_conversation(
        llm,
        options.configuration,
        conversation_id=options.conversation_id,
        continue_latest=options.continue_latest,
        system=options.system,
    )
    view = found or (await llm.conversation(options.configuration, system=options.system)).view
    replies = llm.services.replies
    try:
        if not options.stream:
            reply = await replies.send(view.id, VIEWER, text, overrides=options.overrides)
            return _Said(result=reply.result, streamed=False, conversation_id=view.id)
        stream = await replies.stream(view.id, VIEWER, text, overrides=options.overrides)
        await print_stream(stream)
        return _Said(result=stream.result, streamed=True, conversation_id=view.id)
    except BaseException:
        if found is None:
            with anyio.CancelScope(shield=True):
                await forget_if_empty(llm, view.id)
        raise


async def _one_off(
    llm: LLMManager,
    configuration: str | None,
    prompt: str | RenderedTemplate,
    system: str | None,
    overrides: dict[str, Any],
    streaming: bool,
) -> _Said:
    """A call kept in no conversation: `--no-save`, or a template."""
    template = prompt if isinstance(prompt, RenderedTemplate) else None
    if not streaming:
        result = await llm.chat(configuration, prompt, system=system, **overrides)
        return _Said(result=result, streamed=False, template=template)
    stream = llm.stream(configuration, prompt, system=system, **overrides)
    await print_stream(stream)
    return _Said(result=stream.result, streamed=True, template=template)


async def _template_call(
    llm: LLMManager,
    configuration: str | None,
    reference: str,
    variables: dict[str, str],
    system: str | None,
    overrides: dict[str, Any],
    streaming: bool,
) -> _Said:
    rendered = await llm.templates.render(reference, variables)
    return await _one_off(llm, configuration, rendered, system, overrides, streaming)


async def print_stream(stream: ChatStream) -> None:
    """Print text as it arrives; Ctrl-C stops the call, which is still accounted (as cancelled)."""
    wrote = False
    async with stream:
        try:
            async for event in stream:
                if isinstance(event, TextDelta):
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                    wrote = True
        except asyncio.CancelledError:
            await stream.aclose()
        finally:
            if wrote:
                sys.stdout.write("\n")


def _report(said: _Said, as_json: bool) -> None:
    """The reply's text (unless it streamed already) on standard output, its summary on standard error."""
    result = said.result
    if result is None:
        return
    if as_json:
        print_json(
            {
                **result_json(result),
                "conversation_id": said.conversation_id,
                "template": _template_json(said.template),
            }
        )
        return
    if not said.streamed:
        typer.echo(result.text)
    summary = result_summary(result)
    if said.conversation_id:
        summary.append(f" · conversation {said.conversation_id}")
    if said.template:
        summary.append(f" · template {said.template.name} v{said.template.version}")
    consoles()[1].print(summary)
    if result.status == "cancelled":
        raise typer.Exit(130)


def _template_json(template: RenderedTemplate | None) -> dict[str, Any] | None:
    return None if template is None else {"name": template.name, "version": template.version}


def result_json(result: ChatResult) -> dict[str, object]:
    return {
        "text": result.text,
        "tool_calls": [asdict(call) for call in result.tool_calls],
        "usage": {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "total_tokens": result.usage.total_tokens,
            "cached_tokens": result.usage.cached_tokens,
            "estimated": result.usage.estimated,
        },
        "cost": None if result.cost is None else str(result.cost),
        "cost_display": money(result.cost),
        "log_id": result.log_id,
        "configuration": result.configuration,
        "provider": result.provider,
        "model": result.model,
        "finish_reason": result.finish_reason,
        "latency_ms": result.latency_ms,
        "ttft_ms": result.ttft_ms,
        "attempts": result.attempts,
    }
