import { readFile } from "node:fs/promises";
import { handle } from "hono/aws-lambda";
import { decryptSstResources, envWithSstLinks } from "../core/sst-links";
import { createAdminApp } from "./app";
import { createAdminRuntime } from "./runtime";

// Handler de AWS Lambda (API Gateway v2). El runtime se crea una vez por contenedor.
// Desplegado con SST, los secretos llegan cifrados en SST_KEY_FILE (links de sst.config.ts).
const { SST_KEY_FILE, SST_KEY } = process.env;
const sstResources =
  SST_KEY_FILE && SST_KEY ? await decryptSstResources(await readFile(SST_KEY_FILE), SST_KEY) : {};
const runtime = await createAdminRuntime(envWithSstLinks(process.env, sstResources));
export const handler = handle(createAdminApp(runtime.deps));
