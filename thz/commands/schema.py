"""`thz schema`: the JSON Schema of every ZMQ message header (pipeline/schema.py), printed or written to files."""
from __future__ import annotations

import json
from pathlib import Path

import click

TOPIC_CHOICES = ("raw", "frame", "roi", "result", "status")


@click.command("schema")
@click.option("--topic", type=click.Choice(TOPIC_CHOICES), default=None, help="one topic (default: all)")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="write <topic>.schema.json files into this folder instead of printing (docs/schemas is "
                   "generated so)")
def schema(topic: str | None, out: str | None) -> None:
    """JSON Schema (draft 2020-12) of the message headers, generated from the pydantic models that check them."""
    from pipeline.schema import message_schema, message_schemas

    schemas = {topic: message_schema(topic)} if topic else message_schemas()
    if out is None:
        click.echo(json.dumps(schemas[topic] if topic else schemas, indent=2))
        return
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    for t, s in schemas.items():
        (d / f"{t}.schema.json").write_text(json.dumps(s, indent=2) + "\n")
        click.echo(f"wrote {d / f'{t}.schema.json'}", err=True)
