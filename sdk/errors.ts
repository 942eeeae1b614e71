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

/** Credenciales rechazadas (invalid_client, cliente bloqueado, token inválido). No se oculta con fallbacks. */
export class FarutechAuthError extends FarutechError {
  override name = "FarutechAuthError";
  constructor(
    code: string,
    message: string,
    status?: number,
    readonly retryAfterSeconds?: number,
  ) {
    super(code, message, status);
  }
}

/** 403: el token no puede leer esa instancia (no está en sus instance_ids). */
export class FarutechForbiddenError extends FarutechError {
  override name = "FarutechForbiddenError";
}

/** El edge no responde, tarda demasiado o falla (5xx): el único caso en que se usan snapshot viejo o fallback. */
export class FarutechUnavailableError extends FarutechError {
  override name = "FarutechUnavailableError";
}
