import { DrizzleQueryError } from "drizzle-orm/errors";
import { createLogger } from "../../core/logger";

// Worker de prueba (test/workerd/logger.test.ts): registra con el logger del edge dentro de workerd,
// donde pino usa su versión de navegador, y devuelve lo que llegó a la consola.
const METHODS = ["debug", "info", "log", "warn", "error"] as const;

// biome-ignore lint/style/noDefaultExport: wrangler carga el worker por su export default.
export default {
  async fetch(): Promise<Response> {
    const seen: { method: string; args: unknown[] }[] = [];
    const saved = METHODS.map((m) => [m, console[m]] as const);
    for (const m of METHODS) {
      console[m] = (...args: unknown[]) => {
        seen.push({ method: m, args: JSON.parse(JSON.stringify(args)) });
      };
    }
    try {
      const logger = createLogger({ service: "edge", level: "info" }).child({ requestId: "r-1" });
      logger.info(
        { authorization: "Bearer leaked-token", client: { client_secret: "leaked-secret" } },
        "credentials in fields",
      );
      const err = new DrizzleQueryError(
        "select * from oauth_clients where client_id = $1",
        ["leaked-param"],
        new Error("connection refused"),
      );
      logger.error({ err }, "request failed");
      logger.debug("below the level");
    } finally {
      for (const [m, fn] of saved) console[m] = fn;
    }
    return Response.json(seen);
  },
};
