import { FarutechAuthError, FarutechError, FarutechUnavailableError } from "./errors";
import {
  type FarutechLogger,
  readJson,
  send,
  serverFailure,
  stringField,
  type Transport,
} from "./http";

export interface TokenSourceOptions {
  transport: Transport;
  clientId: string;
  clientSecret: string;
  now: () => number;
  logger: FarutechLogger;
  /** Fracción de expires_in tras la que se renueva (por defecto 0.8). */
  refreshRatio?: number;
}

interface Token {
  accessToken: string;
  refreshToken: string | undefined;
  /** Desde aquí se pide otro token; el actual sigue valiendo hasta expiresAt. */
  refreshAt: number;
  expiresAt: number;
}

// RFC 6749 §2.3.1: id y secreto van form-urlencoded antes de Base64.
function basicAuth(id: string, secret: string): string {
  const enc = (v: string) => encodeURIComponent(v).replace(/%20/g, "+");
  return `Basic ${btoa(`${enc(id)}:${enc(secret)}`)}`;
}

/** Tokens OAuth del cliente: uno a la vez (single-flight), renovado antes de vencer. */
export class TokenSource {
  private current: Token | undefined;
  private inflight: Promise<Token> | undefined;
  private readonly refreshRatio: number;

  constructor(private readonly options: TokenSourceOptions) {
    this.refreshRatio = options.refreshRatio ?? 0.8;
  }

  /** Access token vigente; pide otro si ya toca renovarlo. */
  async accessToken(): Promise<string> {
    const now = this.options.now();
    const current = this.current;
    if (current && now < current.refreshAt) return current.accessToken;
    if (!this.inflight) {
      this.inflight = this.obtain().finally(() => {
        this.inflight = undefined;
      });
    }
    try {
      return (await this.inflight).accessToken;
    } catch (err) {
      // Renovar antes de tiempo da margen: si el edge no responde, el token aún válido sirve.
      if (err instanceof FarutechUnavailableError && current && now < current.expiresAt) {
        this.options.logger.warn({ code: err.code }, "token renewal failed, current token kept");
        return current.accessToken;
      }
      throw err;
    }
  }

  /** El edge rechazó este access token (p. ej. rotación de claves): el siguiente se pide de nuevo. */
  invalidate(accessToken: string): void {
    if (this.current?.accessToken === accessToken) {
      this.current = { ...this.current, refreshAt: 0, expiresAt: 0 };
    }
  }

  /** Refresh token vigente, para revocarlo al cerrar. */
  refreshToken(): string | undefined {
    return this.current?.refreshToken;
  }

  forget(): void {
    this.current = undefined;
  }

  authorization(): string {
    return basicAuth(this.options.clientId, this.options.clientSecret);
  }

  private async obtain(): Promise<Token> {
    const refreshToken = this.current?.refreshToken;
    if (refreshToken) {
      try {
        return await this.request({ grant_type: "refresh_token", refresh_token: refreshToken });
      } catch (err) {
        // Vencido, revocado o reusado: el secreto del cliente sigue sirviendo para empezar de nuevo.
        if (!(err instanceof FarutechAuthError && err.code === "invalid_grant")) throw err;
        this.options.logger.debug({}, "refresh token rejected, using client credentials");
      }
    }
    return this.request({ grant_type: "client_credentials" });
  }

  private async request(form: Record<string, string>): Promise<Token> {
    const startedAt = this.options.now();
    const res = await send(this.options.transport, "/oauth/token", {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        accept: "application/json",
        authorization: this.authorization(),
      },
      body: new URLSearchParams(form).toString(),
    });
    const body = await readJson(res);
    if (res.status >= 500) throw serverFailure(res, "/oauth/token");
    if (!res.ok) {
      const code = stringField(body, "error") ?? "invalid_client";
      const description = stringField(body, "error_description") ?? `HTTP ${res.status}`;
      const retryAfter = Number(res.headers.get("retry-after") ?? Number.NaN);
      throw new FarutechAuthError(
        code,
        `Token request (${form.grant_type}) rejected: ${code}: ${description}`,
        res.status,
        Number.isFinite(retryAfter) ? retryAfter : undefined,
      );
    }
    const accessToken = stringField(body, "access_token");
    const tokenType = stringField(body, "token_type");
    if (!accessToken || tokenType?.toLowerCase() !== "bearer") {
      throw new FarutechError("bad_response", "Token response without a Bearer access_token", 200);
    }
    // expires_in es opcional en RFC 6749; sin él se asume un minuto.
    const expiresIn =
      typeof body?.expires_in === "number" && body.expires_in > 0 ? body.expires_in : 60;
    const lifetimeMs = expiresIn * 1000;
    const token: Token = {
      accessToken,
      // Si el edge no rota el refresh token, se conserva el anterior (RFC 6749 §6).
      refreshToken: stringField(body, "refresh_token") ?? form.refresh_token,
      refreshAt: startedAt + lifetimeMs * this.refreshRatio,
      expiresAt: startedAt + lifetimeMs,
    };
    this.current = token;
    this.options.logger.debug({ grantType: form.grant_type, expiresIn }, "access token obtained");
    return token;
  }
}
