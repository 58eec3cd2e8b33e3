#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Compares the documented D-Bus API with what the running broker exports.

    introspect-diff.py DOCUMENTED.xml OBJECT_PATH=LIVE.xml...

DOCUMENTED.xml is the installed interface description (dbus/org.sbx.Broker1.xml);
each LIVE.xml is `busctl introspect --xml-interface` of one live object. Every
interface outside org.freedesktop.DBus.* is compared member by member: methods
(in and out signatures, argument names), signals (signature, argument names),
properties (type, access, PropertiesChanged behaviour), and the standard
org.freedesktop.DBus.* member annotations. Each interface of the documentation
must be on a live object whose path matches the documented one (decimal ids as
in "_12" match any id), and every live interface must be documented. Prints each
difference; exits 1 if there is any.
"""
import re
import sys
import xml.etree.ElementTree as ET

STANDARD = "org.freedesktop.DBus."
EMITS = "org.freedesktop.DBus.Property.EmitsChangedSignal"


def annotations(elem):
    """The standard annotations of an element, except EmitsChangedSignal (handled per property)."""
    return {
        a.get("name"): a.get("value")
        for a in elem.findall("annotation")
        if a.get("name", "").startswith(STANDARD) and a.get("name") != EMITS
    }


def emits(elem, default):
    for a in elem.findall("annotation"):
        if a.get("name") == EMITS:
            return a.get("value")
    return default


def args(elem, direction=None):
    """(type, name) of the arguments; a method argument without direction is "in"."""
    return [
        (a.get("type"), a.get("name") or "")
        for a in elem.findall("arg")
        if direction is None or (a.get("direction") or "in") == direction
    ]


def describe(iface):
    """Maps "kind name" to a dict of aspects, each compared on its own."""
    members = {}
    iface_emits = emits(iface, "true")
    for m in iface.findall("method"):
        ins, outs = args(m, "in"), args(m, "out")
        members["method " + m.get("name")] = {
            "in signature": "".join(t for t, _ in ins),
            "out signature": "".join(t for t, _ in outs),
            "in argument names": ",".join(n for _, n in ins),
            "out argument names": ",".join(n for _, n in outs),
            "annotations": annotations(m),
        }
    for s in iface.findall("signal"):
        a = args(s)
        members["signal " + s.get("name")] = {
            "signature": "".join(t for t, _ in a),
            "argument names": ",".join(n for _, n in a),
            "annotations": annotations(s),
        }
    for p in iface.findall("property"):
        members["property " + p.get("name")] = {
            "type": p.get("type"),
            "access": p.get("access"),
            "EmitsChangedSignal": emits(p, iface_emits),
            "annotations": annotations(p),
        }
    return members


def interfaces(root, base):
    """Yields (object path, interface element) for every interface below root."""

    def walk(node, path):
        name = node.get("name")
        if name:
            path = name if name.startswith("/") else path.rstrip("/") + "/" + name
        for iface in node.findall("interface"):
            yield path, iface
        for child in node.findall("node"):
            yield from walk(child, path)

    yield from walk(root, base)


def path_pattern(path):
    return re.sub(r"/_[0-9]+(?=/|$)", "/_<id>", path)


def main(argv):
    if len(argv) < 3 or any("=" not in a for a in argv[2:]):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    problems = []
    documented = {}
    for path, iface in interfaces(ET.parse(argv[1]).getroot(), "/"):
        name = iface.get("name")
        if name in documented:
            problems.append(f"{name}: documented twice")
        documented[name] = (path, iface)

    live = {}
    for spec in argv[2:]:
        obj, _, file = spec.partition("=")
        for _, iface in interfaces(ET.parse(file).getroot(), obj):
            name = iface.get("name")
            if name.startswith(STANDARD):
                continue
            live.setdefault(name, []).append((obj, iface))

    for name in sorted(set(documented) | set(live)):
        if name not in live:
            problems.append(f"{name}: documented, but on none of the live objects")
            continue
        if name not in documented:
            objs = ", ".join(o for o, _ in live[name])
            problems.append(f"{name}: exported on {objs}, but not documented")
            continue
        doc_path, doc_iface = documented[name]
        want = describe(doc_iface)
        for obj, live_iface in live[name]:
            where = f"{name} on {obj}"
            if path_pattern(obj) != path_pattern(doc_path):
                problems.append(f"{where}: documented on {doc_path}")
            have = describe(live_iface)
            for member in sorted(set(want) | set(have)):
                if member not in have:
                    problems.append(f"{where}: {member} is documented but not exported")
                elif member not in want:
                    problems.append(f"{where}: {member} is exported but not documented")
                else:
                    for aspect, value in want[member].items():
                        if have[member][aspect] != value:
                            problems.append(
                                f"{where}: {member}: {aspect} is {have[member][aspect]!r}, documented {value!r}"
                            )
    for p in problems:
        print(p)
    if not problems:
        print(f"{len(documented)} interfaces match: {', '.join(sorted(documented))}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
