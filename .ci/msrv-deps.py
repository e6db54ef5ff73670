#!/usr/bin/env python3
"""Fail if a dependency declares a `rust-version` newer than the package that uses it.

Only one Rust toolchain exists on the CI machines, so the minimum supported Rust version (MSRV)
cannot be built here. What can be checked is the lock file: for every workspace member, each
package its build pulls in (normal and build dependencies, transitively, plus the member's own
dev-dependencies and theirs) must not ask for a newer compiler than the member's `rust-version`.
A dependency without a `rust-version` is listed but cannot be judged.

Reads `cargo metadata --format-version 1` on standard input.
"""
import json
import sys


def version_key(text):
    """`1.89` and `1.89.0` are the same version: pad to three parts."""
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    meta = json.load(sys.stdin)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    failures = []
    undeclared = set()
    for member in meta["workspace_members"]:
        package = packages[member]
        ours = package.get("rust_version")
        if not ours:
            failures.append(f"{package['name']}: no rust-version declared")
            continue
        # The member's own dependencies of every kind; below them only what builds them.
        seen = set()
        stack = [dep["pkg"] for dep in nodes[member]["deps"]]
        while stack:
            pkg_id = stack.pop()
            if pkg_id in seen:
                continue
            seen.add(pkg_id)
            for dep in nodes[pkg_id]["deps"]:
                if any(kind["kind"] in (None, "build") for kind in dep["dep_kinds"]):
                    stack.append(dep["pkg"])
        for pkg_id in sorted(seen):
            dep = packages[pkg_id]
            if dep["source"] is None:
                continue  # a workspace member: judged on its own
            theirs = dep.get("rust_version")
            if not theirs:
                undeclared.add(f"{dep['name']} {dep['version']}")
            elif version_key(theirs) > version_key(ours):
                failures.append(
                    f"{package['name']} (rust-version {ours}) depends on "
                    f"{dep['name']} {dep['version']} which needs Rust {theirs}"
                )
    members = ", ".join(
        f"{packages[m]['name']} {packages[m].get('rust_version')}" for m in meta["workspace_members"]
    )
    print(f"rust-version per member: {members}")
    if undeclared:
        print(f"{len(undeclared)} dependencies declare no rust-version (not judged): "
              + ", ".join(sorted(undeclared)))
    if failures:
        print("MSRV check failed:")
        for line in failures:
            print(f"  {line}")
        return 1
    print("every dependency's rust-version is within its user's rust-version")
    return 0


if __name__ == "__main__":
    sys.exit(main())
