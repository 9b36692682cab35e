"""MkDocs hooks: formulas rendered to MathML at build time; Sphinx roles as plain code.

Formulas (``$...$``, ``$$...$$``, ``\\( \\)``, ``\\[ \\]``, found by
``pymdownx.arithmatex`` in generic mode) become MathML while the site is built, with
``latex2mathml`` (the ``docs`` extra): browsers draw MathML themselves, so the site
needs no math script, no CDN and no network, and an offline copy shows formulas,
not raw LaTeX. A formula latex2mathml cannot read fails the build.

The docstrings cross-reference with reST roles (``:class:`FitResult```,
``:func:`~symdiff.models.parse.parse_formula```); mkdocstrings renders Markdown, where the
role name would show as text. This drops the role name and, for ``~``-prefixed
targets, keeps only the last component, as Sphinx displays them.
"""

import html
import re

from latex2mathml.converter import convert

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):<code>(~?)([^<]*)</code>")


def _plain(match):
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


_MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)
_DELIMITERS = {"span": (r"\(", r"\)"), "div": (r"\[", r"\]")}


def _mathml(match):
    tag, body = match.groups()
    latex = html.unescape(body).strip()
    opening, closing = _DELIMITERS[tag]
    if latex.startswith(opening) and latex.endswith(closing):
        latex = latex[len(opening):-len(closing)]
    mathml = convert(latex.strip(), display="block" if tag == "div" else "inline")
    return f'<{tag} class="arithmatex">{mathml}</{tag}>'


def on_page_content(html_text, page, config, files):
    return _MATH.sub(_mathml, _ROLE.sub(_plain, html_text))
