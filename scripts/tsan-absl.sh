#!/usr/bin/env bash
# Builds an Abseil instrumented for ThreadSanitizer, for flatstore's TSan build. Debian's
# libabsl is compiled without -fsanitize=thread, so ThreadSanitizer cannot see
# absl::Mutex lock and unlock and reports races that are not there. This script takes
# Debian's own abseil source package, at the version of the installed libabsl-dev, and
# compiles it with -fsanitize=thread.
#
# Usage: bash scripts/tsan-absl.sh DIR
# Installs static libraries and a CMake package into DIR/prefix; point a build at it with
# -Dabsl_DIR=DIR/prefix/lib/cmake/absl. A second run does nothing (not even a download)
# while DIR/prefix was built from the same libabsl-dev version with the same settings.
#
# The source comes through apt-get from the Debian archives the machine already installs
# from, read as deb-src through a private apt configuration in DIR/apt: the machine's
# apt configuration and package lists are never changed. Needs apt-get, dpkg-dev
# (apt-get source unpacks with dpkg-source), cmake and the C++ compiler.
set -euo pipefail

if (($# != 1)); then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir=$(mkdir -p "$1" && cd "$1" && pwd)
jobs=${JOBS:-2}

# The same ABI as the installed headers: the source package patches absl/base/options.h
# itself (its own absl::string_view and absl::optional, the inline namespace, hardened
# mode), which runtime/absl_compat.h relies on, so nothing here overrides an option. The
# language standard is flatstore's, C++20, so that the inline functions compiled into
# Abseil and into flatstore come from the same code. Static libraries and no shared ones:
# the test executables carry this Abseil inside and never load Debian's libabsl*.so,
# whose symbols (same inline namespace) would otherwise interpose.
version=$(dpkg-query -W -f='${Version}' libabsl-dev)
flags="-fsanitize=thread -fno-omit-frame-pointer"
cmake_args=(
  -DCMAKE_BUILD_TYPE=RelWithDebInfo
  -DCMAKE_CXX_STANDARD=20 -DCMAKE_CXX_STANDARD_REQUIRED=ON -DCMAKE_CXX_EXTENSIONS=OFF
  -DABSL_PROPAGATE_CXX_STD=ON
  "-DCMAKE_CXX_FLAGS=$flags"
  -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON
  -DBUILD_TESTING=OFF -DABSL_ENABLE_INSTALL=ON
  -DCMAKE_INSTALL_PREFIX="$dir/prefix" -DCMAKE_INSTALL_LIBDIR=lib
)
# What DIR/prefix was built from; a change of any part rebuilds it.
stamp_text="abseil $version; ${CXX:-c++}; ${cmake_args[*]}"
stamp="$dir/prefix/flatstore-build-stamp"

# debian_src_sources: prints deb822 stanzas asking for the sources (deb-src) of every
# Debian archive the machine installs packages from: the "deb" entries apt knows whose
# suite is this release's codename or one of its companions (bookworm, bookworm-updates,
# bookworm-security), component main. Other vendors' repositories are left out: they
# may not serve sources and are not signed with Debian's key.
debian_src_sources() {
  local codename uri suite component
  # shellcheck source=/dev/null # the machine's, not the project's
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  # --no-release-info: without it apt lists only the archives whose index it has
  # downloaded, none on a machine whose package lists were cleaned.
  # shellcheck disable=SC2016 # $(NAME) is apt's placeholder, not the shell's
  apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' \
    'Target-Of: deb' | sort -u |
    while read -r uri suite component; do
      [[ "$component" == main ]] || continue
      [[ "$suite" == "$codename" || "$suite" == "$codename"-* ]] || continue
      printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\n' "$uri" "$suite"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n'
    done
}

# fetch_source: downloads and unpacks the abseil source package into DIR/source and
# prints the path of the unpacked tree. apt checks every file against the archive's
# signed index; apt-get source then unpacks and applies Debian's patches (dpkg-source -x).
fetch_source() {
  local apt_dir="$dir/apt"
  rm -rf "$apt_dir" "$dir/source"
  mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache" "$dir/source"
  debian_src_sources >"$apt_dir/sources.list.d/debian-src.sources"
  if [[ ! -s "$apt_dir/sources.list.d/debian-src.sources" ]]; then
    echo "tsan-absl: apt knows no Debian archive to ask for sources" >&2
    exit 1
  fi
  # Only the private files are read and written. The sandbox user is root because the
  # private directories are not writable by apt's usual download user, _apt.
  local apt=(apt-get -q
    -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$apt_dir/sources.list.d"
    -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache"
    -o APT::Sandbox::User=root)
  "${apt[@]}" update >&2
  (cd "$dir/source" && "${apt[@]}" source "abseil=$version" >&2)
  local trees=("$dir"/source/*/)
  if ((${#trees[@]} != 1)) || [[ ! -f "${trees[0]}CMakeLists.txt" ]]; then
    echo "tsan-absl: no unpacked source tree in $dir/source" >&2
    exit 1
  fi
  echo "${trees[0]%/}"
}

# build_install SOURCE: configures, builds and installs Abseil into DIR/prefix. Every
# library is built (no tests): the installed package exports all of them, and CMake
# refuses to load an export whose files are missing.
build_install() {
  local src=$1
  rm -rf "$dir/build" "$dir/prefix"
  cmake -S "$src" -B "$dir/build" "${cmake_args[@]}"
  cmake --build "$dir/build" -j"$jobs"
  cmake --install "$dir/build" >/dev/null
  echo "$stamp_text" >"$stamp"
}

if [[ -f "$stamp" && "$(cat "$stamp")" == "$stamp_text" ]]; then
  echo "tsan-absl: $dir/prefix is up to date (abseil $version)"
  exit 0
fi
start=$SECONDS
src=$(fetch_source)
echo "tsan-absl: building abseil $version from $src"
build_install "$src"
echo "tsan-absl: installed into $dir/prefix in $((SECONDS - start))s"
