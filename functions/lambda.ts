import { handle } from "hono/aws-lambda";
import { createAdminApp } from "./app";
import { createAdminRuntime } from "./runtime";

// Handler de AWS Lambda (API Gateway v2). El runtime se crea una vez por contenedor.
const runtime = await createAdminRuntime(process.env);
export const handler = handle(createAdminApp(runtime.deps));
