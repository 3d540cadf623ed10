#!/usr/bin/env bash
# Packs Egress.Core into artifacts/packages with a unique pre-release version, then restores, builds and runs
# this sample against that package (never against the project), as a consumer of the package would.
# Exit code: the sample's (0 when every step gave the expected result).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
feed="$root/artifacts/packages"
cd "$root"

# A unique version per run, so a package cached by an earlier run can never be used instead of this one.
suffix="local.$(date -u +%Y%m%d%H%M%S).$$"
version=$(dotnet msbuild src/Egress.Core/Egress.Core.csproj -getProperty:PackageVersion -p:VersionSuffix="$suffix")
echo "== packing Egress.Core $version into $feed"

# Forget the packages earlier runs of this script made (only those: *-local.* versions of Egress.Core), once a day
# old: a run going on at the same time (another checkout, CI) still needs its own.
global=$(dotnet nuget locals global-packages --list | sed -n 's/^global-packages: *//p')
if [ -d "${global:?}/egress.core" ]; then
  find "$global/egress.core" -mindepth 1 -maxdepth 1 -name '*-local.*' -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
fi
if [ -d "$feed" ]; then
  find "$feed" -maxdepth 1 -name 'Egress.Core.*-local.*.*nupkg' -mmin +1440 -delete 2>/dev/null || true
fi

dotnet pack src/Egress.Core/Egress.Core.csproj -c Release -o "$feed" -p:VersionSuffix="$suffix" -v q -nologo
test -f "$feed/Egress.Core.$version.nupkg" || { echo "error: $feed/Egress.Core.$version.nupkg was not produced" >&2; exit 1; }

echo "== building samples/EmbeddedEnclave against the package"
dotnet build "$here/EmbeddedEnclave.csproj" -c Release -v q -nologo -p:EgressCoreVersion="$version"

# Prove the sample really used the package from the local feed, not a project reference.
assets="$here/obj/project.assets.json"
grep -q "\"Egress.Core/$version\"" "$assets" || { echo "error: $assets does not reference Egress.Core $version" >&2; exit 1; }

echo "== running"
exec dotnet "$here/bin/Release/net10.0/EmbeddedEnclave.dll"
