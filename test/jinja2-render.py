"""Renders a chat template with Python's Jinja2 set up the way transformers (and so vLLM) sets it up.

stdin:  {"template": str, "cases": [{template variables}, ...]}
stdout: [{"text": str, "plain": str} or {"error": str}, ...], one per case

"text" comes from transformers' environment: an ImmutableSandboxedEnvironment with trim_blocks,
lstrip_blocks and loopcontrols, a raise_exception global that raises TemplateError, and a tojson filter
that is json.dumps without ASCII escaping. "plain" comes from the same environment without trim_blocks
and lstrip_blocks, to show the output does not depend on them. Only what raise_exception raises is reported
as an error; any other exception is a broken template and ends the script.

--ints-as-floats reads every JSON integer as a float, as a client sending `3.0` makes Python see it.
"""

import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Raised(jinja2.exceptions.TemplateError):
    """What raise_exception raises (transformers raises TemplateError itself)."""


def raise_exception(message):
    raise Raised(message)


def tojson(value, **options):
    return json.dumps(value, ensure_ascii=False, **options)


def compile_template(source, **options):
    env = ImmutableSandboxedEnvironment(extensions=[jinja2.ext.loopcontrols], **options)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)


def main():
    parse_int = float if "--ints-as-floats" in sys.argv[1:] else int
    request = json.loads(sys.stdin.read(), parse_int=parse_int)
    transformers_like = compile_template(request["template"], trim_blocks=True, lstrip_blocks=True)
    plain = compile_template(request["template"])
    results = []
    for case in request["cases"]:
        try:
            results.append({"text": transformers_like.render(**case), "plain": plain.render(**case)})
        except Raised as err:
            results.append({"error": str(err)})
    json.dump(results, sys.stdout, ensure_ascii=False)


main()
