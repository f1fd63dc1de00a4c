/**
 * The one error the XFRM client reports: a NetlinkError (errno, code, the kernel's ext-ack
 * text and offset, sequence) that also says which request it was — its operation text and, in a
 * batch, its position. Local refusals (the request failed validation and was never sent) are
 * EINVAL with `validation: true`; undecodable replies are EPROTO.
 */
import { NetlinkCodecError } from '../netlink/codec-error.js';
import { errnoNumber } from '../netlink/errno.js';
import { NetlinkError } from '../netlink/error.js';

export class XfrmError extends NetlinkError {
  override readonly name = 'XfrmError';
  /** Position in the batch given to applyBatch; undefined for single calls. */
  readonly index: number | undefined;
  /** True when our own checks refused the request before anything was sent. */
  readonly validation: boolean;

  constructor(
    details: ConstructorParameters<typeof NetlinkError>[0] & { readonly index?: number; readonly validation?: boolean },
  ) {
    super(details);
    this.index = details.index;
    this.validation = details.validation ?? false;
    if (details.index !== undefined) this.message = `entry ${details.index}: ${this.message}`;
  }

  /** Wraps whatever a client operation failed with. */
  static from(error: unknown, operation: string, index?: number, validation = false): XfrmError {
    if (error instanceof XfrmError && error.index === index) return error;
    if (error instanceof NetlinkError) {
      return new XfrmError({
        operation: error.operation,
        errno: error.errno,
        sequence: error.sequence,
        extendedAck: {
          message: error.kernelMessage,
          offset: error.kernelOffset,
          missingType: error.missingAttribute,
          missingNestOffset: undefined,
          cookie: undefined,
        },
        detail: error.detail,
        ...(index === undefined ? {} : { index }),
        cause: error,
      });
    }
    if (error instanceof NetlinkCodecError) {
      return new XfrmError({
        operation,
        errno: errnoNumber(validation ? 'EINVAL' : 'EPROTO'),
        sequence: 0,
        // The operation is already in the message: keep the codec's detail only.
        detail: validation ? `refused before sending: ${error.detail}` : `undecodable reply: ${error.message}`,
        validation,
        ...(index === undefined ? {} : { index }),
        cause: error,
      });
    }
    return new XfrmError({
      operation,
      errno: errnoNumber('EIO'),
      sequence: 0,
      detail: error instanceof Error ? error.message : String(error),
      ...(index === undefined ? {} : { index }),
      cause: error,
    });
  }
}
