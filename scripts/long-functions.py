#!/usr/bin/env python3
"""Lists Swift functions (func, init, deinit, subscript) longer than a limit, longest first.

Usage: scripts/long-functions.py [--limit N] [PATH ...]   (defaults: 60, Sources)

A function's length is its lines from the declaration to its closing brace, both included,
as an editor shows them. Braces inside string literals and comments are skipped; a function
nested in another is counted on its own and inside its parent.
"""
import argparse
import os
import re
import sys

DECL = re.compile(r'^\s*(?:@[\w()".:, ]+\s+)*(?:(?:public|private|fileprivate|internal|open|static|class|'
                  r'final|override|mutating|nonmutating|convenience|required|nonisolated|@inline\(__always\))\s+)*'
                  r'(func\s+([^\s(<]+)|init[?!]?|deinit|subscript)\b')


def code_only(text):
    """The text with string literals' and comments' contents blanked (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i)); i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j
        elif text.startswith('"""', i):
            j = text.find('"""', i + 3)
            j = n if j < 0 else j + 3
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 2 if text[j] == '\\' else 1
            out.append(' ' * (min(j + 1, n) - i)); i = j + 1
        else:
            out.append(text[i]); i += 1
    return ''.join(out)


def functions(path):
    with open(path, encoding='utf-8') as f:
        lines = code_only(f.read()).split('\n')
    for start, line in enumerate(lines):
        m = DECL.match(line)
        if not m:
            continue
        name = m.group(2) or m.group(1)
        depth, opened = 0, False
        for end in range(start, len(lines)):
            for ch in lines[end]:
                if ch == '{':
                    depth += 1; opened = True
                elif ch == '}':
                    depth -= 1
            # A protocol requirement has no body: it ends at its own line.
            if not opened and end > start and not lines[end - 1].rstrip().endswith((',', '(', '->')):
                break
            if opened and depth <= 0:
                yield name, start + 1, end - start + 1
                break


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--limit', type=int, default=60)
    ap.add_argument('paths', nargs='*', default=['Sources'])
    args = ap.parse_args()
    found = []
    for root in args.paths:
        walk = [(root, [], [os.path.basename(root)])] if os.path.isfile(root) else os.walk(root)
        for d, _, files in walk:
            for fn in files:
                if fn.endswith('.swift'):
                    p = root if os.path.isfile(root) else os.path.join(d, fn)
                    found += [(n, p, line, name) for name, line, n in functions(p) if n > args.limit]
    for n, p, line, name in sorted(found, reverse=True):
        print(f'{n:4d}  {p}:{line}  {name}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
