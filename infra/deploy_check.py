"""Checks, without AWS, what `sam deploy --config-file infra/samconfig.toml` after
`sam build` would ship; run by `bash infra/deploy-build.sh check` with the venv's Python (it
uses the SAM CLI's own template parser and template lookup).

`deploy_check.py built`:
1. The config leaves `sam deploy` to pick its template, and SAM then picks the built one
   (.aws-sam/build/template.yaml), not the sources (template.yaml, CodeUri ".": the
   whole repository).
2. Every function of template.yaml is in the built template, its CodeUri a folder of
   .aws-sam/build holding one file, `bootstrap`: an executable ELF for the function's
   architecture (what SAM zips and uploads is that folder, whole).

`deploy_check.py packaged PACKAGED_TEMPLATE`: the template `sam package` wrote after
uploading to S3 (moto, at AWS_ENDPOINT_URL) what `sam deploy` would upload: each
function's CodeUri is an uploaded zip holding only an executable `bootstrap`. Prints each
function's zip size.

Exit 0 when all holds; else 1, each problem on its own line.
"""

import io
import os
import sys
import tomllib
import zipfile

from samcli.commands._utils.options import get_or_default_template_file_name
from samcli.yamlhelper import yaml_parse

BUILD_DIR = os.path.join(".aws-sam", "build")
BUILT_TEMPLATE = os.path.join(BUILD_DIR, "template.yaml")
CONFIG = os.path.join("infra", "samconfig.toml")
# ELF e_machine of each Lambda architecture.
MACHINES = {"arm64": 0xB7, "x86_64": 0x3E}
FUNCTION = "AWS::Serverless::Function"


def functions(template):
    resources = template.get("Resources", {})
    return {name: r for name, r in resources.items() if r.get("Type") == FUNCTION}


def prop(template, function, key):
    own = function.get("Properties", {})
    if key in own:
        return own[key]
    return template.get("Globals", {}).get("Function", {}).get(key)


def check_config(problems):
    with open(CONFIG, "rb") as f:
        config = tomllib.load(f)
    env = config.get("default", {})
    for section in ("global", "deploy", "package"):
        if "template_file" in env.get(section, {}).get("parameters", {}):
            problems.append(
                f"{CONFIG}: [default.{section}.parameters] sets template_file: sam deploy "
                "must be left to pick the built template (and --guided to save next to it)"
            )
    # What `sam deploy` resolves with no template given (SAM's own lookup).
    chosen = get_or_default_template_file_name(None, None, "template.[yaml|yml|json]", include_build=True)
    if os.path.relpath(chosen) != BUILT_TEMPLATE:
        problems.append(f"sam deploy would use {chosen}, not {BUILT_TEMPLATE}")
    else:
        print(f"sam deploy --config-file {CONFIG}: uses {BUILT_TEMPLATE}")


def elf_machine(path):
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little")


def check_build(problems):
    with open("template.yaml") as f:
        source = yaml_parse(f.read())
    if not os.path.isfile(BUILT_TEMPLATE):
        problems.append(f"no {BUILT_TEMPLATE}: run sam build first")
        return
    with open(BUILT_TEMPLATE) as f:
        built = yaml_parse(f.read())
    wanted, have = functions(source), functions(built)
    for name in sorted(set(wanted) - set(have)):
        problems.append(f"{name}: missing from {BUILT_TEMPLATE}")
    for name, function in sorted(have.items()):
        code_uri = prop(built, function, "CodeUri")
        if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
            problems.append(f"{name}: CodeUri {code_uri!r} is not a build folder")
            continue
        folder = os.path.normpath(os.path.join(BUILD_DIR, code_uri))
        if os.path.dirname(folder) != BUILD_DIR:
            problems.append(f"{name}: CodeUri {code_uri!r} is not a folder of {BUILD_DIR}")
            continue
        if not os.path.isdir(folder):
            problems.append(f"{name}: {folder} does not exist")
            continue
        files = sorted(os.listdir(folder))
        if files != ["bootstrap"]:
            problems.append(f"{name}: {folder} holds {files}, not just bootstrap")
            continue
        bootstrap = os.path.join(folder, "bootstrap")
        if not os.access(bootstrap, os.X_OK):
            problems.append(f"{name}: {bootstrap} is not executable")
        arch = (prop(built, function, "Architectures") or ["x86_64"])[0]
        if elf_machine(bootstrap) != MACHINES.get(arch):
            problems.append(f"{name}: {bootstrap} is not an ELF executable for {arch}")
        if prop(built, function, "Handler") != "bootstrap":
            problems.append(f"{name}: Handler is not bootstrap")
    if not problems:
        print(f"{BUILT_TEMPLATE}: {len(have)} functions, each CodeUri a build folder holding only its bootstrap")


def check_packaged(path, problems):
    import boto3

    with open(path) as f:
        packaged = yaml_parse(f.read())
    with open(BUILT_TEMPLATE) as f:
        built = yaml_parse(f.read())
    for name in sorted(set(functions(built)) - set(functions(packaged))):
        problems.append(f"{name}: missing from the packaged template")
    s3 = boto3.client("s3")
    mib = 1024 * 1024
    rows = []
    for name, function in sorted(functions(packaged).items()):
        code_uri = prop(packaged, function, "CodeUri")
        if not isinstance(code_uri, str) or not code_uri.startswith("s3://"):
            problems.append(f"{name}: packaged CodeUri {code_uri!r} is not an uploaded object")
            continue
        bucket, key = code_uri[len("s3://"):].split("/", 1)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        archive = zipfile.ZipFile(io.BytesIO(body))
        if archive.namelist() != ["bootstrap"]:
            problems.append(f"{name}: the uploaded zip holds {archive.namelist()[:5]}, not just bootstrap")
            continue
        info = archive.getinfo("bootstrap")
        if not (info.external_attr >> 16) & 0o111:
            problems.append(f"{name}: the uploaded bootstrap is not executable")
        binary = built["Resources"][name].get("Metadata", {}).get("BuildProperties", {}).get("Binary", "?")
        arch = (prop(packaged, function, "Architectures") or ["x86_64"])[0]
        rows.append((name, binary, arch, info.file_size, len(body)))
    if rows:
        print("sam package uploaded, for each function, a zip holding only its bootstrap:")
        print(f"{'function':<30} {'binary':<22} {'arch':<7} {'bootstrap':>10} {'zip':>9}")
        for name, binary, arch, size, zipped in rows:
            print(f"{name:<30} {binary:<22} {arch:<7} {size / mib:>8.2f}Mi {zipped / mib:>7.2f}Mi")
        print(f"{len(rows)} functions, {sum(r[4] for r in rows) / mib:.1f} MiB zipped in all")


def main():
    problems = []
    if sys.argv[1:2] == ["built"]:
        check_config(problems)
        check_build(problems)
    elif sys.argv[1:2] == ["packaged"] and len(sys.argv) == 3:
        check_packaged(sys.argv[2], problems)
    else:
        print("usage: deploy_check.py built | packaged PACKAGED_TEMPLATE", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"deploy check: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
