/** Base de los errores del SDK: `code` estable para decidir en código, `status` HTTP si lo hubo. */
export class FarutechError extends Error {
  override name = "FarutechError";
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Credenciales rechazadas (invalid_client, token inválido). No se oculta con fallbacks. */
export class FarutechAuthError extends FarutechError {
  override name = "FarutechAuthError";
}

/** 403: el token no puede leer esa instancia (no está en sus instance_ids). */
export class FarutechForbiddenError extends FarutechError {
  override name = "FarutechForbiddenError";
}

/**
 * El edge no responde, tarda demasiado, falla (5xx) o pide esperar (429, con `retryAfterSeconds`):
 * el único caso en que se usan snapshot viejo o fallback.
 */
export class FarutechUnavailableError extends FarutechError {
  override name = "FarutechUnavailableError";
  readonly retryAfterSeconds: number | undefined;
  constructor(
    code: string,
    message: string,
    status?: number,
    options?: { cause?: unknown; retryAfterSeconds?: number },
  ) {
    super(code, message, status, options);
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}
