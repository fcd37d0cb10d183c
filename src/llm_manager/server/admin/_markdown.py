"""Model replies as HTML: CommonMark (plus tables and strikethrough), rendered on the server and inert.

A reply is text a model wrote — often from a prompt someone else wrote — so it is untrusted:

- raw HTML is never passed through (`html: False` escapes it), so `<script>` or `<img onerror>`
  arrive as text;
- a link or image becomes a link only for `http:`, `https:`, `mailto:` or a scheme-less address;
  `javascript:`, `data:`, `vbscript:` and every other scheme stay plain text;
- links carry `rel="nofollow noopener"` and open in a new tab, so a chat never navigates away;
- images are shown as links to the image: nothing is fetched from wherever a model points
  (the page's Content-Security-Policy would refuse it anyway).

The parser is built per call (a few hundredths of a millisecond): no shared mutable state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup, escape

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "nofollow noopener"
_SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.\-]*):")


def render(text: str) -> Markup:
    """Markdown to HTML that is safe to put in a page as it is."""
    return Markup(_parser().render(text))  # noqa: S704 -- html is off and links are checked: see above


def is_safe_link(url: str) -> bool:
    """A scheme-less (relative) address, or one of the few schemes a chat may link to."""
    scheme = _SCHEME.match(url)
    return scheme is None or scheme.group(1).lower() in SAFE_SCHEMES


def _parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.enable(["table", "strikethrough"])
    parser.validateLink = is_safe_link  # type: ignore[method-assign]
    parser.add_render_rule("link_open", _link_open)
    parser.add_render_rule("image", _image)
    return parser


def _link_open(self: Any, tokens: Sequence[Token], index: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[index]
    token.attrSet("rel", LINK_REL)
    token.attrSet("target", "_blank")
    rendered: str = self.renderToken(tokens, index, options, env)
    return rendered


def _image(self: Any, tokens: Sequence[Token], index: int, options: OptionsDict, env: EnvType) -> str:
    """`![alt](src)` as a link to `src` named by its alt text: no remote image is ever loaded."""
    token = tokens[index]
    source = str(token.attrGet("src") or "")
    alt = self.renderInlineAsText(token.children or [], options, env) or source
    return str(Markup('<a href="{}" rel="{}" target="_blank">{}</a>').format(source, LINK_REL, escape(alt)))
