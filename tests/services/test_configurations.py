from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import SecretStr, ValidationError

from llm_manager import LLMManager
from llm_manager.errors import ConflictError, InvalidInputError, InvalidParameterError, NotFoundError
from llm_manager.services.calls import CallContext
from llm_manager.services.configuration_specs import ConfigurationCreate, ConfigurationUpdate

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"


def _openai(slug: str = "gpt", **extra: object) -> ConfigurationCreate:
    return ConfigurationCreate(
        slug=slug, provider="openai", model="gpt-4o-mini", api_key=SecretStr(KEY), **extra
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("slug", ["Has Space", "UPPER", "-leading", "a" * 65, "semi;colon", ""])
def test_slug_must_be_url_safe(slug: str) -> None:
    with pytest.raises(ValidationError, match="slug"):
        ConfigurationCreate(slug=slug, provider="demo", model="demo-chat")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"temperature": 2.5}, "default_params.temperature"),
        ({"max_tokens": 0}, "default_params.max_tokens"),
        ({"top_p": 1.5}, "default_params.top_p"),
        ({"temprature": 0.5}, "default_params.temprature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "default_params.stop"),
    ],
)
def test_bad_default_params_are_refused_by_name(params: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        ConfigurationCreate(slug="x", provider="demo", model="demo-chat", default_params=params)


@pytest.mark.parametrize("url", ["ftp://example.com", "not a url", "http://user:pw@example.com"])
def test_base_url_must_be_plain_http(url: str) -> None:
    with pytest.raises(ValidationError, match="base_url"):
        ConfigurationCreate(slug="x", provider="openai", model="m", base_url=url)


async def test_key_is_write_only(llm: LLMManager) -> None:
    view = await llm.configurations.create(_openai())
    assert view.has_api_key
    assert view.api_key_hint == "…0123"
    assert KEY not in repr(view)
    assert KEY not in str(view)
    resolved = (await llm.configurations.resolve_chain("gpt", application_id=None))[0]
    assert resolved.api_key == KEY
    assert KEY not in repr(resolved)


async def test_changing_base_url_clears_the_key(llm: LLMManager) -> None:
    await llm.configurations.create(_openai())
    view = await llm.configurations.update(
        "gpt", ConfigurationUpdate(base_url="https://proxy.example.com/v1")
    )
    assert not view.has_api_key
    assert view.api_key_hint is None
    resolved = await llm.configurations.resolve("gpt")
    assert resolved.api_key is None


async def test_new_base_url_with_new_key_keeps_the_new_key(llm: LLMManager) -> None:
    await llm.configurations.create(_openai())
    view = await llm.configurations.update(
        "gpt",
        ConfigurationUpdate(
            base_url="https://proxy.example.com/v1", api_key=SecretStr("sk-other-key-000000009999")
        ),
    )
    assert view.has_api_key
    assert view.api_key_hint == "…9999"


async def test_unknown_provider_and_duplicate_slug(llm: LLMManager) -> None:
    with pytest.raises(InvalidInputError, match="unknown provider") as caught:
        await llm.configurations.create(ConfigurationCreate(slug="x", provider="nope", model="m"))
    assert caught.value.field == "provider"
    await llm.configurations.create(_openai())
    with pytest.raises(ConflictError, match="already taken"):
        await llm.configurations.create(_openai())
    assert len(await llm.configurations.list_all()) == 1, "a refused create leaves nothing behind"


async def test_openai_compatible_needs_a_base_url(llm: LLMManager) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await llm.configurations.create(
            ConfigurationCreate(slug="local", provider="openai-compatible", model="m")
        )
    assert caught.value.field == "base_url"


async def test_fallbacks_are_ordered_and_validated(llm: LLMManager) -> None:
    for slug in ("a", "b", "c"):
        await llm.configurations.create(ConfigurationCreate(slug=slug, provider="demo", model="demo-chat"))
    view = await llm.configurations.update("a", ConfigurationUpdate(fallbacks=["c", "b"]))
    assert view.fallbacks == ("c", "b")
    chain = await llm.configurations.resolve_chain("a", application_id=None)
    assert [item.slug for item in chain] == ["a", "c", "b"]
    with pytest.raises(InvalidInputError, match="itself"):
        await llm.configurations.update("a", ConfigurationUpdate(fallbacks=["a"]))
    with pytest.raises(InvalidInputError, match="not found") as caught:
        await llm.configurations.update("a", ConfigurationUpdate(fallbacks=["missing"]))
    assert caught.value.field == "fallbacks"
    assert (await llm.configurations.get("a")).fallbacks == ("c", "b"), "a refused update changes nothing"
    await llm.configurations.update("c", ConfigurationUpdate(is_active=False))
    chain = await llm.configurations.resolve_chain("a", application_id=None)
    assert [item.slug for item in chain] == ["a", "b"], "inactive fallbacks are skipped"


async def test_one_default_per_scope_and_default_resolution(llm: LLMManager) -> None:
    await llm.applications.create("shop")
    await llm.configurations.create(
        ConfigurationCreate(slug="g1", provider="demo", model="demo-chat", is_default=True)
    )
    await llm.configurations.create(
        ConfigurationCreate(slug="g2", provider="demo", model="demo-chat", is_default=True)
    )
    await llm.configurations.create(
        ConfigurationCreate(
            slug="s1", provider="demo", model="demo-chat", application="shop", is_default=True
        )
    )
    defaults = {view.slug for view in await llm.configurations.list_all() if view.is_default}
    assert defaults == {"g2", "s1"}
    shop = await llm.applications.get("shop")
    assert (await llm.configurations.resolve_chain(None, application_id=None))[0].slug in {"g2", "s1"}
    assert (await llm.configurations.resolve_chain(None, application_id=shop.id))[0].slug == "s1"


async def test_application_scope_hides_other_applications_configurations(llm: LLMManager) -> None:
    shop = await llm.applications.create("shop")
    blog = await llm.applications.create("blog")
    await llm.configurations.create(
        ConfigurationCreate(slug="shop-bot", provider="demo", model="demo-chat", application="shop")
    )
    await llm.configurations.create(ConfigurationCreate(slug="shared", provider="demo", model="demo-chat"))
    assert (await llm.configurations.resolve_chain("shop-bot", application_id=shop.id))[0].slug == "shop-bot"
    assert (await llm.configurations.resolve_chain("shared", application_id=blog.id))[0].slug == "shared"
    with pytest.raises(NotFoundError):
        await llm.configurations.resolve_chain("shop-bot", application_id=blog.id)
    with pytest.raises(NotFoundError):
        await llm.chat("shop-bot", "hi", context=CallContext(application_id=blog.id))
    assert (await llm.usage.list_page()).rows == [], "a refused call costs nothing and records nothing"


async def test_inactive_configuration_refuses_calls(llm: LLMManager) -> None:
    await llm.configurations.create(
        ConfigurationCreate(slug="off", provider="demo", model="demo-chat", is_active=False)
    )
    with pytest.raises(InvalidInputError, match="inactive"):
        await llm.chat("off", "hi")


async def test_price_override_needs_both_prices(llm: LLMManager) -> None:
    with pytest.raises(InvalidInputError, match="both"):
        await llm.configurations.create(_openai(input_price=Decimal("0.5")))
    view = await llm.configurations.create(_openai(input_price=Decimal("0.5"), output_price=Decimal("1.5")))
    assert view.price_override is not None
    assert view.price_override.output == Decimal("1.5")


async def test_call_overrides_are_validated(llm: LLMManager) -> None:
    await llm.configurations.create(ConfigurationCreate(slug="d", provider="demo", model="demo-chat"))
    with pytest.raises(InvalidParameterError) as caught:
        await llm.chat("d", "hi", temperature=3)
    assert caught.value.field == "params.temperature"
    with pytest.raises(InvalidParameterError, match="unknown parameter"):
        await llm.chat("d", "hi", api_base="http://evil.example.com")


async def test_delete_keeps_usage_history(llm: LLMManager) -> None:
    await llm.configurations.create(
        ConfigurationCreate(slug="d", provider="demo", model="demo-chat", options={"delay_ms": 0})
    )
    result = await llm.chat("d", "hi")
    await llm.configurations.delete("d")
    with pytest.raises(NotFoundError):
        await llm.configurations.get("d")
    row = await llm.usage.get(result.log_id)
    assert row is not None
    assert row.configuration == "d"


async def test_unknown_application_is_refused_before_any_call(llm: LLMManager) -> None:
    await llm.configurations.create(ConfigurationCreate(slug="d", provider="demo", model="demo-chat"))
    with pytest.raises(NotFoundError, match="application 4242"):
        await llm.chat("d", "hi", context=CallContext(application_id=4242))
    assert (await llm.usage.list_page()).rows == []


async def test_unscoped_callers_get_the_global_default(llm: LLMManager) -> None:
    await llm.applications.create("shop")
    await llm.configurations.create(
        ConfigurationCreate(slug="global", provider="demo", model="demo-chat", is_default=True)
    )
    await llm.configurations.create(
        ConfigurationCreate(
            slug="shop-default", provider="demo", model="demo-chat", application="shop", is_default=True
        )
    )
    assert (await llm.configurations.resolve_chain(None, application_id=None))[0].slug == "global"
