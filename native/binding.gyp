# Builds the NETLINK_XFRM socket addon: `npx node-gyp rebuild --directory native`
# (from the package root). The output native/build/Release/xfrm_netlink.node is loaded by
# src/netlink/socket.ts. The addon owns the socket only; message framing is TypeScript.
{
  "targets": [
    {
      "target_name": "xfrm_netlink",
      "sources": [
        "src/addon.cc",
        "src/file_lock.cc",
        "src/netns.cc",
        "src/udp_encap.cc",
        "src/xfrm_fd.cc",
        "src/xfrm_socket.cc"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      # common.gypi asks for gnu++17; we want plain ISO C++17 and every warning we can get on our
      # own code. node-addon-api comes in as a system include (absolute path) so its headers'
      # warnings do not drown ours.
      "cflags_cc!": ["-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": [
        "-std=c++17", "-Wall", "-Wextra", "-Wshadow", "-Wconversion", "-Wno-sign-conversion",
        "-isystem", "<!(node -p \"require('path').dirname(require.resolve('node-addon-api/package.json'))\")"
      ],
      "cflags": ["-Wall", "-Wextra"]
    }
  ]
}
