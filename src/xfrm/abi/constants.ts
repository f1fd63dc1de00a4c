/**
 * Numeric constants of the XFRM netlink ABI (linux/xfrm.h, linux/in.h, linux/udp.h), each under
 * its kernel name. Only the codec imports these; everything above it speaks the string unions of
 * ../types.ts.
 */

/** Message types (enum with XFRM_MSG_BASE = 0x10). */
export const XFRM_MSG_NEWSA = 0x10;
export const XFRM_MSG_DELSA = 0x11;
export const XFRM_MSG_GETSA = 0x12;
export const XFRM_MSG_NEWPOLICY = 0x13;
export const XFRM_MSG_DELPOLICY = 0x14;
export const XFRM_MSG_GETPOLICY = 0x15;
export const XFRM_MSG_ALLOCSPI = 0x16;
export const XFRM_MSG_ACQUIRE = 0x17;
export const XFRM_MSG_EXPIRE = 0x18;
export const XFRM_MSG_UPDPOLICY = 0x19;
export const XFRM_MSG_UPDSA = 0x1a;
export const XFRM_MSG_POLEXPIRE = 0x1b;
export const XFRM_MSG_FLUSHSA = 0x1c;
export const XFRM_MSG_FLUSHPOLICY = 0x1d;
export const XFRM_MSG_NEWAE = 0x1e;
export const XFRM_MSG_GETAE = 0x1f;
export const XFRM_MSG_REPORT = 0x20;
export const XFRM_MSG_MIGRATE = 0x21;
export const XFRM_MSG_NEWSADINFO = 0x22;
export const XFRM_MSG_GETSADINFO = 0x23;
export const XFRM_MSG_NEWSPDINFO = 0x24;
export const XFRM_MSG_GETSPDINFO = 0x25;
export const XFRM_MSG_MAPPING = 0x26;
export const XFRM_MSG_SETDEFAULT = 0x27;
export const XFRM_MSG_GETDEFAULT = 0x28;

const MESSAGE_NAMES: Readonly<Record<number, string>> = {
  [XFRM_MSG_NEWSA]: 'XFRM_MSG_NEWSA',
  [XFRM_MSG_DELSA]: 'XFRM_MSG_DELSA',
  [XFRM_MSG_GETSA]: 'XFRM_MSG_GETSA',
  [XFRM_MSG_NEWPOLICY]: 'XFRM_MSG_NEWPOLICY',
  [XFRM_MSG_DELPOLICY]: 'XFRM_MSG_DELPOLICY',
  [XFRM_MSG_GETPOLICY]: 'XFRM_MSG_GETPOLICY',
  [XFRM_MSG_ALLOCSPI]: 'XFRM_MSG_ALLOCSPI',
  [XFRM_MSG_ACQUIRE]: 'XFRM_MSG_ACQUIRE',
  [XFRM_MSG_EXPIRE]: 'XFRM_MSG_EXPIRE',
  [XFRM_MSG_UPDPOLICY]: 'XFRM_MSG_UPDPOLICY',
  [XFRM_MSG_UPDSA]: 'XFRM_MSG_UPDSA',
  [XFRM_MSG_POLEXPIRE]: 'XFRM_MSG_POLEXPIRE',
  [XFRM_MSG_FLUSHSA]: 'XFRM_MSG_FLUSHSA',
  [XFRM_MSG_FLUSHPOLICY]: 'XFRM_MSG_FLUSHPOLICY',
  [XFRM_MSG_NEWAE]: 'XFRM_MSG_NEWAE',
  [XFRM_MSG_GETAE]: 'XFRM_MSG_GETAE',
  [XFRM_MSG_REPORT]: 'XFRM_MSG_REPORT',
  [XFRM_MSG_MIGRATE]: 'XFRM_MSG_MIGRATE',
  [XFRM_MSG_NEWSADINFO]: 'XFRM_MSG_NEWSADINFO',
  [XFRM_MSG_GETSADINFO]: 'XFRM_MSG_GETSADINFO',
  [XFRM_MSG_NEWSPDINFO]: 'XFRM_MSG_NEWSPDINFO',
  [XFRM_MSG_GETSPDINFO]: 'XFRM_MSG_GETSPDINFO',
  [XFRM_MSG_MAPPING]: 'XFRM_MSG_MAPPING',
  [XFRM_MSG_SETDEFAULT]: 'XFRM_MSG_SETDEFAULT',
  [XFRM_MSG_GETDEFAULT]: 'XFRM_MSG_GETDEFAULT',
};

export function xfrmMessageName(type: number): string {
  return MESSAGE_NAMES[type] ?? `XFRM message type ${type}`;
}

/** Attributes (enum xfrm_attr_type_t). */
export const XFRMA_ALG_AUTH = 1;
export const XFRMA_ALG_CRYPT = 2;
export const XFRMA_ALG_COMP = 3;
export const XFRMA_ENCAP = 4;
export const XFRMA_TMPL = 5;
export const XFRMA_SA = 6;
export const XFRMA_POLICY = 7;
export const XFRMA_SEC_CTX = 8;
export const XFRMA_LTIME_VAL = 9;
export const XFRMA_REPLAY_VAL = 10;
export const XFRMA_REPLAY_THRESH = 11;
export const XFRMA_ETIMER_THRESH = 12;
export const XFRMA_SRCADDR = 13;
export const XFRMA_COADDR = 14;
export const XFRMA_LASTUSED = 15;
export const XFRMA_POLICY_TYPE = 16;
export const XFRMA_MIGRATE = 17;
export const XFRMA_ALG_AEAD = 18;
export const XFRMA_KMADDRESS = 19;
export const XFRMA_ALG_AUTH_TRUNC = 20;
export const XFRMA_MARK = 21;
export const XFRMA_TFCPAD = 22;
export const XFRMA_REPLAY_ESN_VAL = 23;
export const XFRMA_SA_EXTRA_FLAGS = 24;
export const XFRMA_PROTO = 25;
export const XFRMA_ADDRESS_FILTER = 26;
export const XFRMA_PAD = 27;
export const XFRMA_OFFLOAD_DEV = 28;
export const XFRMA_SET_MARK = 29;
export const XFRMA_SET_MARK_MASK = 30;
export const XFRMA_IF_ID = 31;
export const XFRMA_MTIMER_THRESH = 32;
/**
 * XFRMA_SA_DIR (__u8, XFRM_SA_DIR_IN = 1 / _OUT = 2): added in Linux 6.10, after the
 * /usr/include/linux/xfrm.h of this Debian 12 build host, so defined here. It is the next value
 * of enum xfrm_attr_type_t after XFRMA_MTIMER_THRESH (32), i.e. 33 — the layout test checks that
 * relation against the header, and the host-kernel test checks that the running kernel validates
 * attribute 33 as the SA direction. Kernels before 6.10 ignore it (attributes above their
 * XFRMA_MAX are skipped by nlmsg_parse_deprecated), so an SA sent with a direction to 6.1 is
 * installed without one.
 */
export const XFRMA_SA_DIR = 33;

const ATTRIBUTE_NAMES: Readonly<Record<number, string>> = {
  [XFRMA_ALG_AUTH]: 'XFRMA_ALG_AUTH',
  [XFRMA_ALG_CRYPT]: 'XFRMA_ALG_CRYPT',
  [XFRMA_ALG_COMP]: 'XFRMA_ALG_COMP',
  [XFRMA_ENCAP]: 'XFRMA_ENCAP',
  [XFRMA_TMPL]: 'XFRMA_TMPL',
  [XFRMA_SA]: 'XFRMA_SA',
  [XFRMA_POLICY]: 'XFRMA_POLICY',
  [XFRMA_SEC_CTX]: 'XFRMA_SEC_CTX',
  [XFRMA_LTIME_VAL]: 'XFRMA_LTIME_VAL',
  [XFRMA_REPLAY_VAL]: 'XFRMA_REPLAY_VAL',
  [XFRMA_REPLAY_THRESH]: 'XFRMA_REPLAY_THRESH',
  [XFRMA_ETIMER_THRESH]: 'XFRMA_ETIMER_THRESH',
  [XFRMA_SRCADDR]: 'XFRMA_SRCADDR',
  [XFRMA_COADDR]: 'XFRMA_COADDR',
  [XFRMA_LASTUSED]: 'XFRMA_LASTUSED',
  [XFRMA_POLICY_TYPE]: 'XFRMA_POLICY_TYPE',
  [XFRMA_MIGRATE]: 'XFRMA_MIGRATE',
  [XFRMA_ALG_AEAD]: 'XFRMA_ALG_AEAD',
  [XFRMA_KMADDRESS]: 'XFRMA_KMADDRESS',
  [XFRMA_ALG_AUTH_TRUNC]: 'XFRMA_ALG_AUTH_TRUNC',
  [XFRMA_MARK]: 'XFRMA_MARK',
  [XFRMA_TFCPAD]: 'XFRMA_TFCPAD',
  [XFRMA_REPLAY_ESN_VAL]: 'XFRMA_REPLAY_ESN_VAL',
  [XFRMA_SA_EXTRA_FLAGS]: 'XFRMA_SA_EXTRA_FLAGS',
  [XFRMA_PROTO]: 'XFRMA_PROTO',
  [XFRMA_ADDRESS_FILTER]: 'XFRMA_ADDRESS_FILTER',
  [XFRMA_PAD]: 'XFRMA_PAD',
  [XFRMA_OFFLOAD_DEV]: 'XFRMA_OFFLOAD_DEV',
  [XFRMA_SET_MARK]: 'XFRMA_SET_MARK',
  [XFRMA_SET_MARK_MASK]: 'XFRMA_SET_MARK_MASK',
  [XFRMA_IF_ID]: 'XFRMA_IF_ID',
  [XFRMA_MTIMER_THRESH]: 'XFRMA_MTIMER_THRESH',
  [XFRMA_SA_DIR]: 'XFRMA_SA_DIR',
};

export function xfrmAttributeName(type: number): string {
  return ATTRIBUTE_NAMES[type] ?? `XFRMA attribute ${type}`;
}

/** SAD info attributes (enum xfrm_sadattr_type_t). */
export const XFRMA_SAD_CNT = 1;
export const XFRMA_SAD_HINFO = 2;

/** SPD info attributes (enum xfrm_spdattr_type_t). */
export const XFRMA_SPD_INFO = 1;
export const XFRMA_SPD_HINFO = 2;
export const XFRMA_SPD_IPV4_HTHRESH = 3;
export const XFRMA_SPD_IPV6_HTHRESH = 4;

/** Address families (linux/socket.h). */
export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;

/** IPsec protocol numbers (linux/in.h, linux/in6.h). */
export const IPPROTO_ESP = 50;
export const IPPROTO_AH = 51;
export const IPPROTO_COMP = 108;
/** Mobile IPv6 "protocols" of the SAD (route optimisation); never part of the model. */
export const IPPROTO_ROUTING = 43;
export const IPPROTO_DSTOPTS = 60;
/** IPSEC_PROTO_ANY (linux/ipsec.h): "every IPsec protocol" in XFRM_MSG_FLUSHSA. */
export const IPSEC_PROTO_ANY = 255;

/** XFRM_MODE_*. 5 (IPTFS, Linux 6.14) is not modelled. */
export const XFRM_MODE_TRANSPORT = 0;
export const XFRM_MODE_TUNNEL = 1;
export const XFRM_MODE_ROUTEOPTIMIZATION = 2;
export const XFRM_MODE_IN_TRIGGER = 3;
export const XFRM_MODE_BEET = 4;

/** Policy directions; 3..5 are the per-socket policies (XFRM_POLICY_MAX + dir). */
export const XFRM_POLICY_IN = 0;
export const XFRM_POLICY_OUT = 1;
export const XFRM_POLICY_FWD = 2;
export const XFRM_POLICY_MAX = 3;

export const XFRM_POLICY_TYPE_MAIN = 0;
export const XFRM_POLICY_TYPE_SUB = 1;

export const XFRM_POLICY_ALLOW = 0;
export const XFRM_POLICY_BLOCK = 1;

export const XFRM_POLICY_LOCALOK = 1;
export const XFRM_POLICY_ICMP = 2;

export const XFRM_SHARE_ANY = 0;
export const XFRM_SHARE_SESSION = 1;
export const XFRM_SHARE_USER = 2;
export const XFRM_SHARE_UNIQUE = 3;

/** xfrm_usersa_info.flags. */
export const XFRM_STATE_NOECN = 1;
export const XFRM_STATE_DECAP_DSCP = 2;
export const XFRM_STATE_NOPMTUDISC = 4;
export const XFRM_STATE_WILDRECV = 8;
export const XFRM_STATE_ICMP = 16;
export const XFRM_STATE_AF_UNSPEC = 32;
export const XFRM_STATE_ALIGN4 = 64;
export const XFRM_STATE_ESN = 128;

/** XFRMA_SA_EXTRA_FLAGS bits. */
export const XFRM_SA_XFLAG_DONT_ENCAP_DSCP = 1;
export const XFRM_SA_XFLAG_OSEQ_MAY_WRAP = 2;

/** XFRMA_SA_DIR values (enum xfrm_sa_dir, Linux 6.10). */
export const XFRM_SA_DIR_IN = 1;
export const XFRM_SA_DIR_OUT = 2;

/** Encapsulation types: linux/udp.h UDP_ENCAP_ESPINUDP_NON_IKE / _ESPINUDP, linux/tcp.h TCP_ENCAP_ESPINTCP. */
export const UDP_ENCAP_ESPINUDP_NON_IKE = 1;
export const UDP_ENCAP_ESPINUDP = 2;
export const TCP_ENCAP_ESPINTCP = 7;

/**
 * struct xfrm_aevent_id.flags (enum xfrm_ae_ftype_t): in a GETAE request, which thresholds the
 * reply reports (RTHR, ETHR); in a NEWAE the kernel sends, why it sent it (CR: the counter moved
 * by the replay threshold; CE: the event timer fired; CU: someone set the values with NEWAE).
 */
export const XFRM_AE_RTHR = 1;
export const XFRM_AE_RVAL = 2;
export const XFRM_AE_LVAL = 4;
export const XFRM_AE_ETHR = 8;
export const XFRM_AE_CR = 16;
export const XFRM_AE_CE = 32;
export const XFRM_AE_CU = 64;

/** XFRMA_REPLAY_ESN_MAX: the largest replay window, in packets. */
export const XFRMA_REPLAY_ESN_MAX = 4096;
/** The legacy replay state is a 32-bit bitmap (struct xfrm_replay_state.bitmap). */
export const XFRM_LEGACY_REPLAY_WINDOW_MAX = 32;
/** XFRM_MAX_DEPTH (include/net/xfrm.h): templates per policy. */
export const XFRM_MAX_DEPTH = 6;

/** XFRM_POLICY default actions of XFRM_MSG_GETDEFAULT (struct xfrm_userpolicy_default). */
export const XFRM_USERPOLICY_UNSPEC = 0;
export const XFRM_USERPOLICY_BLOCK = 1;
export const XFRM_USERPOLICY_ACCEPT = 2;
