/**
 * HTTP status of a failed API call, whichever way client-node reports it: the generated APIs
 * throw ApiException with `code`; Watch reports `statusCode`; an in-stream watch ERROR carries a
 * metav1.Status with `code`. Network errors (ECONNREFUSED...) have a string code and no status.
 */
export function apiStatusCode(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const candidate = error as { code?: unknown; statusCode?: unknown };
  if (typeof candidate.code === 'number') return candidate.code;
  if (typeof candidate.statusCode === 'number') return candidate.statusCode;
  return undefined;
}

export const isNotFound = (error: unknown): boolean => apiStatusCode(error) === 404;
export const isConflict = (error: unknown): boolean => apiStatusCode(error) === 409;
export const isAlreadyExists = isConflict;
/** 410 Gone: the resourceVersion asked for has been compacted away; relist. */
export const isGone = (error: unknown): boolean => apiStatusCode(error) === 410;

/** A short description of an API error for logs (ApiException's message embeds headers). */
export function apiErrorSummary(error: unknown): string {
  const status = apiStatusCode(error);
  const reason = statusMessage((error as { body?: unknown } | null)?.body);
  if (status !== undefined) return typeof reason === 'string' ? `HTTP ${status}: ${reason}` : `HTTP ${status}`;
  if (error instanceof Error) {
    const code = (error as Error & { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

/** The `message` of a metav1.Status body; client-node hands the body over as text. */
function statusMessage(body: unknown): string | undefined {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body.length > 0 ? body.slice(0, 300) : undefined;
    }
  }
  const message = typeof parsed === 'object' && parsed !== null ? (parsed as { message?: unknown }).message : undefined;
  return typeof message === 'string' ? message : undefined;
}
