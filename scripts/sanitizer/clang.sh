# Sourced by scripts/sanitize.sh and scripts/fuzz.sh: the ordinary setup
# (Debian packages, the virtualenv), then Debian's clang 22 and its
# sanitizer and libFuzzer runtimes.
"$ROOT/scripts/setup.sh" kiln >/dev/null
for pkg in clang-22 libclang-rt-22-dev; do
  if ! dpkg -s "$pkg" >/dev/null 2>&1; then
    say "installing $pkg"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$pkg" >/dev/null
  fi
done
