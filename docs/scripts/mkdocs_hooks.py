"""MkDocs hook: render the Sphinx roles of our docstrings as plain code.

The docstrings cross-reference with reST roles (``:class:`FitResult```,
``:func:`~symdiff.parse.parse_formula```); mkdocstrings renders Markdown, where the
role name would show as text. This drops the role name and, for ``~``-prefixed
targets, keeps only the last component, as Sphinx displays them.
"""

import re

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):<code>(~?)([^<]*)</code>")


def _plain(match):
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html, page, config, files):
    return _ROLE.sub(_plain, html)
