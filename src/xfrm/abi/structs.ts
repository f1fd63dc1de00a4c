/**
 * Layout tables of the XFRM structs (linux/xfrm.h) as laid out on x86-64, padding included.
 * Each table quotes its C definition; offsets were derived from the C alignment rules and are
 * checked against the real header by test/unit/xfrm-layout.test.ts (compiled probe), so a typo
 * here fails a test rather than corrupting a request.
 *
 * Field names are the C names on purpose: this is the raw ABI, converted to the public model
 * only in the codec (../state-codec.ts, ../policy-codec.ts).
 */
import { at, be16, be32, bytes, cString, s32, struct, u16, u32, u64, u8 } from '../../netlink/layout.js';

/** typedef union { __be32 a4; __be32 a6[4]; struct in6_addr in6; } xfrm_address_t; (network order) */
export const xfrm_address_t = bytes('xfrm_address_t', 16);

/**
 * struct xfrm_id { xfrm_address_t daddr; __be32 spi; __u8 proto; };   // 3 bytes of tail padding
 */
export const xfrm_id = struct('xfrm_id', 24, {
  daddr: at(0, xfrm_address_t),
  spi: at(16, be32),
  proto: at(20, u8),
});

/**
 * struct xfrm_selector {
 *   xfrm_address_t daddr, saddr;
 *   __be16 dport, dport_mask, sport, sport_mask;
 *   __u16 family; __u8 prefixlen_d, prefixlen_s, proto;   // 3 bytes of padding before ifindex
 *   int ifindex; __kernel_uid32_t user;
 * };
 */
export const xfrm_selector = struct('xfrm_selector', 56, {
  daddr: at(0, xfrm_address_t),
  saddr: at(16, xfrm_address_t),
  dport: at(32, be16),
  dport_mask: at(34, be16),
  sport: at(36, be16),
  sport_mask: at(38, be16),
  family: at(40, u16),
  prefixlen_d: at(42, u8),
  prefixlen_s: at(43, u8),
  proto: at(44, u8),
  ifindex: at(48, s32),
  user: at(52, u32),
});

/** struct xfrm_lifetime_cfg: eight __u64 limits (XFRM_INF = ~0 for none). */
export const xfrm_lifetime_cfg = struct('xfrm_lifetime_cfg', 64, {
  soft_byte_limit: at(0, u64),
  hard_byte_limit: at(8, u64),
  soft_packet_limit: at(16, u64),
  hard_packet_limit: at(24, u64),
  soft_add_expires_seconds: at(32, u64),
  hard_add_expires_seconds: at(40, u64),
  soft_use_expires_seconds: at(48, u64),
  hard_use_expires_seconds: at(56, u64),
});

/** struct xfrm_lifetime_cur { __u64 bytes, packets, add_time, use_time; }; */
export const xfrm_lifetime_cur = struct('xfrm_lifetime_cur', 32, {
  bytes: at(0, u64),
  packets: at(8, u64),
  add_time: at(16, u64),
  use_time: at(24, u64),
});

/** struct xfrm_replay_state { __u32 oseq, seq, bitmap; }; */
export const xfrm_replay_state = struct('xfrm_replay_state', 12, {
  oseq: at(0, u32),
  seq: at(4, u32),
  bitmap: at(8, u32),
});

/**
 * struct xfrm_replay_state_esn {
 *   unsigned int bmp_len;   // in 32-bit words
 *   __u32 oseq, seq, oseq_hi, seq_hi, replay_window;
 *   __u32 bmp[];
 * };
 */
export const xfrm_replay_state_esn = struct(
  'xfrm_replay_state_esn',
  24,
  {
    bmp_len: at(0, u32),
    oseq: at(4, u32),
    seq: at(8, u32),
    oseq_hi: at(12, u32),
    seq_hi: at(16, u32),
    replay_window: at(20, u32),
  },
  { name: 'bmp', offset: 24 },
);

/** struct xfrm_algo { char alg_name[64]; unsigned int alg_key_len; /* bits *\/ char alg_key[]; }; */
export const xfrm_algo = struct(
  'xfrm_algo',
  68,
  {
    alg_name: at(0, cString(64)),
    alg_key_len: at(64, u32),
  },
  { name: 'alg_key', offset: 68 },
);

/** struct xfrm_algo_auth { char alg_name[64]; unsigned int alg_key_len, alg_trunc_len; char alg_key[]; }; */
export const xfrm_algo_auth = struct(
  'xfrm_algo_auth',
  72,
  {
    alg_name: at(0, cString(64)),
    alg_key_len: at(64, u32),
    alg_trunc_len: at(68, u32),
  },
  { name: 'alg_key', offset: 72 },
);

/** struct xfrm_algo_aead { char alg_name[64]; unsigned int alg_key_len, alg_icv_len; char alg_key[]; }; */
export const xfrm_algo_aead = struct(
  'xfrm_algo_aead',
  72,
  {
    alg_name: at(0, cString(64)),
    alg_key_len: at(64, u32),
    alg_icv_len: at(68, u32),
  },
  { name: 'alg_key', offset: 72 },
);

/** struct xfrm_stats { __u32 replay_window, replay, integrity_failed; }; */
export const xfrm_stats = struct('xfrm_stats', 12, {
  replay_window: at(0, u32),
  replay: at(4, u32),
  integrity_failed: at(8, u32),
});

/**
 * struct xfrm_usersa_info {
 *   struct xfrm_selector sel; struct xfrm_id id; xfrm_address_t saddr;
 *   struct xfrm_lifetime_cfg lft; struct xfrm_lifetime_cur curlft; struct xfrm_stats stats;
 *   __u32 seq, reqid; __u16 family; __u8 mode, replay_window, flags;   // 7 bytes of tail padding
 * };
 */
export const xfrm_usersa_info = struct('xfrm_usersa_info', 224, {
  sel: at(0, xfrm_selector),
  id: at(56, xfrm_id),
  saddr: at(80, xfrm_address_t),
  lft: at(96, xfrm_lifetime_cfg),
  curlft: at(160, xfrm_lifetime_cur),
  stats: at(192, xfrm_stats),
  seq: at(204, u32),
  reqid: at(208, u32),
  family: at(212, u16),
  mode: at(214, u8),
  replay_window: at(215, u8),
  flags: at(216, u8),
});

/** struct xfrm_usersa_id { xfrm_address_t daddr; __be32 spi; __u16 family; __u8 proto; }; */
export const xfrm_usersa_id = struct('xfrm_usersa_id', 24, {
  daddr: at(0, xfrm_address_t),
  spi: at(16, be32),
  family: at(20, u16),
  proto: at(22, u8),
});

/**
 * struct xfrm_userpolicy_info {
 *   struct xfrm_selector sel; struct xfrm_lifetime_cfg lft; struct xfrm_lifetime_cur curlft;
 *   __u32 priority, index; __u8 dir, action, flags, share;   // 4 bytes of tail padding
 * };
 */
export const xfrm_userpolicy_info = struct('xfrm_userpolicy_info', 168, {
  sel: at(0, xfrm_selector),
  lft: at(56, xfrm_lifetime_cfg),
  curlft: at(120, xfrm_lifetime_cur),
  priority: at(152, u32),
  index: at(156, u32),
  dir: at(160, u8),
  action: at(161, u8),
  flags: at(162, u8),
  share: at(163, u8),
});

/** struct xfrm_userpolicy_id { struct xfrm_selector sel; __u32 index; __u8 dir; }; */
export const xfrm_userpolicy_id = struct('xfrm_userpolicy_id', 64, {
  sel: at(0, xfrm_selector),
  index: at(56, u32),
  dir: at(60, u8),
});

/**
 * struct xfrm_user_tmpl {
 *   struct xfrm_id id; __u16 family; xfrm_address_t saddr; __u32 reqid;
 *   __u8 mode, share, optional; __u32 aalgos, ealgos, calgos;
 * };
 */
export const xfrm_user_tmpl = struct('xfrm_user_tmpl', 64, {
  id: at(0, xfrm_id),
  family: at(24, u16),
  saddr: at(28, xfrm_address_t),
  reqid: at(44, u32),
  mode: at(48, u8),
  share: at(49, u8),
  optional: at(50, u8),
  aalgos: at(52, u32),
  ealgos: at(56, u32),
  calgos: at(60, u32),
});

/** struct xfrm_encap_tmpl { __u16 encap_type; __be16 encap_sport, encap_dport; xfrm_address_t encap_oa; }; */
export const xfrm_encap_tmpl = struct('xfrm_encap_tmpl', 24, {
  encap_type: at(0, u16),
  encap_sport: at(2, be16),
  encap_dport: at(4, be16),
  encap_oa: at(8, xfrm_address_t),
});

/** struct xfrm_mark { __u32 v; __u32 m; }; */
export const xfrm_mark = struct('xfrm_mark', 8, {
  v: at(0, u32),
  m: at(4, u32),
});

/** struct xfrm_userpolicy_type { __u8 type; __u16 reserved1; __u8 reserved2; }; (two holes) */
export const xfrm_userpolicy_type = struct('xfrm_userpolicy_type', 6, {
  type: at(0, u8),
  reserved1: at(2, u16),
  reserved2: at(4, u8),
});

/** struct xfrm_usersa_flush { __u8 proto; }; */
export const xfrm_usersa_flush = struct('xfrm_usersa_flush', 1, {
  proto: at(0, u8),
});

/** struct xfrm_user_expire { struct xfrm_usersa_info state; __u8 hard; }; */
export const xfrm_user_expire = struct('xfrm_user_expire', 232, {
  state: at(0, xfrm_usersa_info),
  hard: at(224, u8),
});

/** struct xfrm_user_polexpire { struct xfrm_userpolicy_info pol; __u8 hard; }; */
export const xfrm_user_polexpire = struct('xfrm_user_polexpire', 176, {
  pol: at(0, xfrm_userpolicy_info),
  hard: at(168, u8),
});

/**
 * struct xfrm_user_acquire {
 *   struct xfrm_id id; xfrm_address_t saddr; struct xfrm_selector sel;
 *   struct xfrm_userpolicy_info policy; __u32 aalgos, ealgos, calgos, seq;
 * };
 */
export const xfrm_user_acquire = struct('xfrm_user_acquire', 280, {
  id: at(0, xfrm_id),
  saddr: at(24, xfrm_address_t),
  sel: at(40, xfrm_selector),
  policy: at(96, xfrm_userpolicy_info),
  aalgos: at(264, u32),
  ealgos: at(268, u32),
  calgos: at(272, u32),
  seq: at(276, u32),
});

/** struct xfrm_user_sec_ctx { __u16 len, exttype; __u8 ctx_alg, ctx_doi; __u16 ctx_len; }; */
export const xfrm_user_sec_ctx = struct('xfrm_user_sec_ctx', 8, {
  len: at(0, u16),
  exttype: at(2, u16),
  ctx_alg: at(4, u8),
  ctx_doi: at(5, u8),
  ctx_len: at(6, u16),
});

/** struct xfrmu_sadhinfo { __u32 sadhcnt; __u32 sadhmcnt; }; */
export const xfrmu_sadhinfo = struct('xfrmu_sadhinfo', 8, {
  sadhcnt: at(0, u32),
  sadhmcnt: at(4, u32),
});

/** struct xfrmu_spdinfo { __u32 incnt, outcnt, fwdcnt, inscnt, outscnt, fwdscnt; }; */
export const xfrmu_spdinfo = struct('xfrmu_spdinfo', 24, {
  incnt: at(0, u32),
  outcnt: at(4, u32),
  fwdcnt: at(8, u32),
  inscnt: at(12, u32),
  outscnt: at(16, u32),
  fwdscnt: at(20, u32),
});

/** struct xfrmu_spdhinfo { __u32 spdhcnt; __u32 spdhmcnt; }; */
export const xfrmu_spdhinfo = struct('xfrmu_spdhinfo', 8, {
  spdhcnt: at(0, u32),
  spdhmcnt: at(4, u32),
});

/**
 * struct xfrm_aevent_id {
 *   struct xfrm_usersa_id sa_id; xfrm_address_t saddr; __u32 flags; __u32 reqid;
 * };   // XFRM_MSG_NEWAE / XFRM_MSG_GETAE
 */
export const xfrm_aevent_id = struct('xfrm_aevent_id', 48, {
  sa_id: at(0, xfrm_usersa_id),
  saddr: at(24, xfrm_address_t),
  flags: at(40, u32),
  reqid: at(44, u32),
});

/** struct xfrm_userpolicy_default { __u8 in, fwd, out; }; (XFRM_MSG_GETDEFAULT) */
export const xfrm_userpolicy_default = struct('xfrm_userpolicy_default', 3, {
  in: at(0, u8),
  fwd: at(1, u8),
  out: at(2, u8),
});

/** Every table, for the layout test: each is checked against sizeof/offsetof from the header. */
export const XFRM_LAYOUTS = [
  xfrm_id,
  xfrm_selector,
  xfrm_lifetime_cfg,
  xfrm_lifetime_cur,
  xfrm_replay_state,
  xfrm_replay_state_esn,
  xfrm_algo,
  xfrm_algo_auth,
  xfrm_algo_aead,
  xfrm_stats,
  xfrm_usersa_info,
  xfrm_usersa_id,
  xfrm_userpolicy_info,
  xfrm_userpolicy_id,
  xfrm_user_tmpl,
  xfrm_encap_tmpl,
  xfrm_mark,
  xfrm_userpolicy_type,
  xfrm_usersa_flush,
  xfrm_user_expire,
  xfrm_user_polexpire,
  xfrm_user_acquire,
  xfrm_user_sec_ctx,
  xfrmu_sadhinfo,
  xfrmu_spdinfo,
  xfrmu_spdhinfo,
  xfrm_userpolicy_default,
  xfrm_aevent_id,
] as const;

export type RawSelector = ReturnType<typeof xfrm_selector.zero>;
export type RawUsersaInfo = ReturnType<typeof xfrm_usersa_info.zero>;
export type RawUserpolicyInfo = ReturnType<typeof xfrm_userpolicy_info.zero>;
export type RawUserTmpl = ReturnType<typeof xfrm_user_tmpl.zero>;
export type RawLifetimeCfg = ReturnType<typeof xfrm_lifetime_cfg.zero>;
export type RawLifetimeCur = ReturnType<typeof xfrm_lifetime_cur.zero>;
