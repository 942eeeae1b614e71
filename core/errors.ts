// Un único tipo de error de aplicación; cada transporte lo traduce a su formato.
export const errorCodes = [
  "validation_failed",
  "bad_request",
  "unauthorized",
  "forbidden",
  "not_found",
  "method_not_allowed",
  "conflict",
  "precondition_failed",
  "payload_too_large",
  "unsupported_media_type",
  "unprocessable",
  "rate_limited",
  "internal",
  "unavailable",
] as const;

export type ErrorCode = (typeof errorCodes)[number];

export interface FieldError {
  path: string;
  message: string;
}

export function statusFor(code: ErrorCode): number {
  switch (code) {
    case "validation_failed":
    case "bad_request":
      return 400;
    case "unauthorized":
      return 401;
    case "forbidden":
      return 403;
    case "not_found":
      return 404;
    case "method_not_allowed":
      return 405;
    case "conflict":
      return 409;
    case "precondition_failed":
      return 412;
    case "payload_too_large":
      return 413;
    case "unsupported_media_type":
      return 415;
    case "unprocessable":
      return 422;
    case "rate_limited":
      return 429;
    case "internal":
      return 500;
    case "unavailable":
      return 503;
  }
}

export function titleFor(code: ErrorCode): string {
  switch (code) {
    case "validation_failed":
      return "Validation failed";
    case "bad_request":
      return "Bad request";
    case "unauthorized":
      return "Unauthorized";
    case "forbidden":
      return "Forbidden";
    case "not_found":
      return "Not found";
    case "method_not_allowed":
      return "Method not allowed";
    case "conflict":
      return "Conflict";
    case "precondition_failed":
      return "Precondition failed";
    case "payload_too_large":
      return "Payload too large";
    case "unsupported_media_type":
      return "Unsupported media type";
    case "unprocessable":
      return "Unprocessable content";
    case "rate_limited":
      return "Too many requests";
    case "internal":
      return "Internal server error";
    case "unavailable":
      return "Service unavailable";
  }
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly fields: FieldError[] | undefined;
  readonly extra: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    detail: string,
    options: { fields?: FieldError[]; extra?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(detail, { cause: options.cause });
    this.name = "AppError";
    this.code = code;
    this.fields = options.fields;
    this.extra = options.extra;
  }

  get status(): number {
    return statusFor(this.code);
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}
