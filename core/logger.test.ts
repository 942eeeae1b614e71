import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { ConfigError } from "./config";
import { createLogger, eventFields } from "./logger";

/** Un logger que guarda sus líneas ya parseadas. */
function recordingLogger() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger({ service: "test", destination }), lines };
}

describe("createLogger", () => {
  it("takes a level in any case and names LOG_LEVEL when it is not one", () => {
    expect(createLogger({ service: "test", level: "WARN" }).level).toBe("warn");
    expect(() => createLogger({ service: "test", level: "verbose" })).toThrow(ConfigError);
    expect(() => createLogger({ service: "test", level: "verbose" })).toThrow(/LOG_LEVEL/);
  });

  it("logs a failed drizzle query without its SQL parameters, keeping the database error", () => {
    const { logger, lines } = recordingLogger();
    const cause = Object.assign(new Error('duplicate key value violates unique constraint "x"'), {
      code: "23505",
    });
    const err = new Error(
      'Failed query: insert into "customers" ("legal_name") values ($1)\nparams: Juan Pérez',
      { cause },
    );
    logger.error({ err }, "request failed");
    const line = JSON.stringify(lines[0]);
    expect(line).not.toContain("Juan Pérez");
    expect(line).not.toContain("insert into");
    expect(lines[0]?.err).toMatchObject({
      message: 'database error: duplicate key value violates unique constraint "x" (23505)',
      code: "23505",
    });
  });

  it("keeps the type, message and stack frames of any other error", () => {
    const { logger, lines } = recordingLogger();
    logger.warn({ err: new TypeError("bad thing") }, "oops");
    expect(lines[0]?.err).toMatchObject({ type: "TypeError", message: "bad thing" });
    const logged = lines[0]?.err as { stack?: string } | undefined;
    expect(String(logged?.stack)).toMatch(/^\s+at /);
  });

  it("redacts secrets", () => {
    const { logger, lines } = recordingLogger();
    logger.info({ clientSecret: "s3cr3t", nested: { password: "p" } }, "x");
    expect(JSON.stringify(lines[0])).not.toMatch(/s3cr3t|"p"/);
  });

  it("redacts tokens, secret hashes and cookies, top level or one level down, in either spelling", () => {
    const { logger, lines } = recordingLogger();
    logger.info(
      {
        refresh_token: "RT-1",
        access_token: "AT-1",
        secretHash: "HASH-1",
        secret_hash: "HASH-2",
        body: { token: "TOK-1", refreshToken: "RT-2", refresh_token: "RT-3", access_token: "AT-2" },
        client: { secretHash: "HASH-3", smtpUrl: "smtp://u:SMTP-1@h" },
        headers: { cookie: "sid=COOKIE-1" },
      },
      "x",
    );
    expect(JSON.stringify(lines[0])).not.toMatch(/RT-|AT-|HASH-|TOK-|SMTP-|COOKIE-/);
  });

  it("serializes an error logged under `error` or `cause` like one under `err`", () => {
    const { logger, lines } = recordingLogger();
    const err = new Error(
      'Failed query: select * from "api_clients" where "secret_hash" = $1\nparams: HASH-PARAM',
    );
    logger.warn({ error: err, cause: err }, "x");
    expect(JSON.stringify(lines[0])).not.toContain("HASH-PARAM");
    expect(lines[0]?.error).toMatchObject({ type: "Error" });
    // Un texto bajo `error` queda como está.
    logger.warn({ error: "plain text" }, "y");
    expect(lines[1]?.error).toBe("plain text");
  });
});

describe("eventFields", () => {
  it("drops what the logger already carries, and renames what it carries with another value", () => {
    const logger = createLogger({ service: "t" }).child({ correlationId: "req-1", worker: "w" });
    expect(
      eventFields(logger, { correlationId: "req-1", eventId: "e1", worker: "w", subject: "s" }),
    ).toEqual({ eventId: "e1", subject: "s" });
    expect(eventFields(logger, { correlationId: "task-9", eventId: "e1" })).toEqual({
      eventCorrelationId: "task-9",
      eventId: "e1",
    });
  });
});
