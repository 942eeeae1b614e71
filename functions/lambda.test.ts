import type { APIGatewayProxyEventV2, APIGatewayProxyResult, Context } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../core/auth/keys";
import { createTokenSigner } from "../core/auth/tokens";
import { seedDemo } from "../db/seed";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import { startNatsForTest, type TestNats } from "../test/support/stack";

// AWS no corre aquí: los eventos de API Gateway v2 se construyen a mano (la forma de
// aws-lambda/APIGatewayProxyEventV2); la app, la base y NATS detrás del handler son reales.
type Handler = (event: APIGatewayProxyEventV2, context: Context) => Promise<APIGatewayProxyResult>;

function event(
  method: string,
  path: string,
  query: string,
  headers: Record<string, string>,
  body?: string,
): APIGatewayProxyEventV2 {
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: path,
    rawQueryString: query,
    headers: { host: "abc123.execute-api.us-east-1.amazonaws.com", ...headers },
    requestContext: {
      accountId: "123456789012",
      apiId: "abc123",
      domainName: "abc123.execute-api.us-east-1.amazonaws.com",
      domainPrefix: "abc123",
      http: { method, path, protocol: "HTTP/1.1", sourceIp: "203.0.113.7", userAgent: "vitest" },
      requestId: crypto.randomUUID(),
      routeKey: "$default",
      stage: "$default",
      time: new Date().toUTCString(),
      timeEpoch: Date.now(),
    },
    isBase64Encoded: false,
    ...(body === undefined ? {} : { body }),
  };
}

// El mismo app como handler de AWS Lambda (API Gateway HTTP API, payload v2).
describe("admin functions as an AWS Lambda handler", () => {
  let db: TestDatabase;
  let nats: TestNats;
  let handler: Handler;
  let token: string;
  const context = { awsRequestId: "req-1", functionName: "farutech-admin" } as Context;

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
    nats = await startNatsForTest();
    const key = await generateSigningKey("lambda-test");
    const settings = {
      issuer: "http://edge.test",
      audience: "farutech-orchestrator",
      accessTokenTtlSeconds: 60,
    };
    Object.assign(process.env, {
      DATABASE_URL: db.url,
      NATS_WS_URL: nats.wsUrl,
      AUTH_SIGNING_KEYS: JSON.stringify([key]),
      AUTH_ISSUER: settings.issuer,
      LOG_LEVEL: "silent",
    });
    handler = (await import("./lambda")).handler as unknown as Handler;
    const signer = await createTokenSigner([key], settings);
    token = (
      await signer.sign({
        sub: "lambda-admin",
        tenant_id: null,
        instance_ids: [],
        roles: ["platform_admin"],
      })
    ).token;
  });

  afterAll(async () => {
    await nats?.dispose();
    await db?.drop();
  });

  it("serves a list request from an API Gateway v2 event", async () => {
    const res = await handler(
      event("GET", "/api/products", "limit=2", { authorization: `Bearer ${token}` }),
      context,
    );
    expect(res.statusCode).toBe(200);
    const body = JSON.parse(res.body) as { items: unknown[]; nextCursor: string | null };
    expect(body.items).toHaveLength(2);
    expect(body.nextCursor).toEqual(expect.any(String));
  });

  it("answers problem+json through the Lambda adapter", async () => {
    const res = await handler(
      event(
        "POST",
        "/api/provisioning/provision",
        "",
        { authorization: `Bearer ${token}`, "content-type": "application/json" },
        "{bad",
      ),
      context,
    );
    expect(res.statusCode).toBe(400);
    expect(res.headers?.["content-type"]).toContain("application/problem+json");
    const unauthorized = await handler(event("GET", "/api/products", "", {}), context);
    expect(unauthorized.statusCode).toBe(401);
  });
});
