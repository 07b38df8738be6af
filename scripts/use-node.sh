# Source this file: puts a Node >= 22 first on PATH.
# If the node on PATH is older (e.g. Debian's Node 20), it installs the `node` package from the
# npm registry (which ships an official Node binary) into .tools/node and uses that.
GM_NODE_VERSION="${GM_NODE_VERSION:-24.21.0}"
gm_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
gm_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$gm_major" -lt 22 ]; then
  gm_tools="$gm_root/.tools/node"
  if [ ! -x "$gm_tools/node_modules/.bin/node" ] || [ "$("$gm_tools/node_modules/.bin/node" --version)" != "v$GM_NODE_VERSION" ]; then
    echo "gm: node $(node --version 2>/dev/null || echo none) is older than 22; installing node@$GM_NODE_VERSION from the npm registry into .tools/node" >&2
    mkdir -p "$gm_tools"
    npm install --prefix "$gm_tools" --no-save --no-package-lock --no-audit --no-fund "node@$GM_NODE_VERSION" >&2 || return 1 2>/dev/null || exit 1
  fi
  export PATH="$gm_tools/node_modules/.bin:$PATH"
fi
echo "gm: using node $(node --version) at $(command -v node)" >&2
unset gm_root gm_major gm_tools
