"""``unclip plugins`` and ``unclip registry export``."""
from __future__ import annotations

import argparse
import json


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list every registered component and any plugin that failed to load")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--verbose", "-v", action="store_true", help="show tracebacks of failed plugins")
    p.set_defaults(handler=run_plugins)

    r = sub.add_parser("registry", help="the generated catalogue of components (registry/)")
    rsub = r.add_subparsers(dest="registry_command", metavar="ACTION")
    rsub.required = True
    e = rsub.add_parser("export", help="write the catalogue and JSON Schemas of every built-in component")
    e.add_argument("--out", default="registry", help="folder to write (default: ./registry)")
    e.add_argument(
        "--all", action="store_true", help="include third-party plugins too (the committed catalogue has built-ins only)"
    )
    e.set_defaults(handler=run_export)


def run_plugins(args: argparse.Namespace) -> int:
    from unclip_core.registry import default_registry

    registry = default_registry()
    if args.json:
        print(
            json.dumps(
                {
                    "components": [
                        {
                            "kind": s.kind,
                            "name": s.name,
                            "distribution": s.provider.distribution,
                            "version": s.provider.version,
                            "plugin": s.provider.plugin,
                            "summary": s.summary,
                        }
                        for s in registry.all_components()
                    ],
                    "importers": [
                        {
                            "name": i.name,
                            "distribution": i.provider.distribution,
                            "version": i.provider.version,
                            "plugin": i.provider.plugin,
                            "summary": i.summary,
                        }
                        for i in sorted(registry.importers.values(), key=lambda i: i.name)
                    ],
                    "shadowed": [
                        {
                            "kind": s.kind,
                            "name": s.name,
                            "use_as": f"{s.provider.plugin}:{s.name}",
                            "distribution": s.provider.distribution,
                            "plugin": s.provider.plugin,
                        }
                        for s in registry.shadowed()
                    ],
                    "duplicates": [
                        {"kind": k, "name": n, "providers": [str(p) for p in providers]}
                        for (k, n), providers in registry.duplicates.items()
                    ],
                    "failures": [
                        {"plugin": f.plugin, "distribution": f.distribution, "error": f.error}
                        for f in registry.failures
                    ],
                },
                indent=2,
            )
        )
        return 0
    rows = [
        (s.kind, s.name, f"{s.provider.distribution} {s.provider.version}", s.summary)
        for s in registry.all_components()
    ] + [
        (s.kind, f"{s.provider.plugin}:{s.name}", f"{s.provider.distribution} {s.provider.version}",
         f"(its name {s.name!r} is a built-in's) {s.summary}")
        for s in registry.shadowed()
    ] + [
        ("importer", i.name, f"{i.provider.distribution} {i.provider.version}", i.summary)
        for i in sorted(registry.importers.values(), key=lambda i: i.name)
    ]
    widths = [max([len(r[i]) for r in rows] + [len(h)]) for i, h in enumerate(("KIND", "NAME", "PROVIDER"))]
    print(f"{'KIND':<{widths[0]}}  {'NAME':<{widths[1]}}  {'PROVIDER':<{widths[2]}}  SUMMARY")
    for kind, name, provider, summary in rows:
        print(f"{kind:<{widths[0]}}  {name:<{widths[1]}}  {provider:<{widths[2]}}  {summary}")
    if registry.shadowed():
        print("\nName clashes (the built-in keeps the name; the plugin's component answers to plugin:name):")
        for spec in registry.shadowed():
            print(f"  {spec.kind} {spec.name!r}: built-in, and {spec.provider} as '{spec.provider.plugin}:{spec.name}'")
    if registry.failures:
        print("\nPlugins with problems:")
        for failure in registry.failures:
            print(f"  {failure.plugin} ({failure.distribution}): {failure.error}")
            if args.verbose and failure.detail:
                print("    " + failure.detail.replace("\n", "\n    "))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from unclip_core.registry import default_registry
    from unclip_core.registry_export import export_registry

    from unclip_core.output_paths import check_writable

    written = export_registry(default_registry(), check_writable(args.out, "registry folder", folder=True), include_third_party=args.all)
    print(f"wrote {len(written)} files to {args.out}/")
    return 0
