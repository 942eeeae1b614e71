import { cp, rm } from "node:fs/promises";
import { resolve } from "node:path";
import { build } from "esbuild";

// `npm run build`: bundles de Node para las imágenes (funciones, workers, migraciones) en dist/.
// Las dependencias quedan fuera del bundle (`packages: "external"`): la imagen final instala solo
// las de producción con `npm ci --omit=dev` y corre `node`, sin tsx.
// Todo queda plano en dist/ porque db/client.ts busca `./migrations` junto al archivo que corre.
export const ENTRY_POINTS = {
  "functions-server": "functions/server.ts",
  "functions-lambda": "functions/lambda.ts",
  workers: "workers/main.ts",
  "db-cli": "db/cli.ts",
  "functions-cli": "functions/cli.ts",
  // Rotación de ENCRYPTION_KEYS desde la imagen: `node dist/reseal-secrets.js [--check]`.
  "reseal-secrets": "scripts/reseal-secrets.ts",
  // Entrada de la imagen del edge: sin dependencias de npm (esa imagen no las trae).
  "edge-container": "scripts/edge-container.ts",
} as const;

export interface BuildResult {
  files: string[];
  /** Archivos del repo que entran en algún bundle (la etapa de build del Dockerfile los copia). */
  inputs: string[];
  /** Paquetes que los bundles importan en tiempo de ejecución (la imagen solo trae los de producción). */
  packages: string[];
}

/** `@scope/pkg/sub` → `@scope/pkg`; `pkg/sub` → `pkg`. */
const packageOf = (path: string) =>
  path
    .split("/")
    .slice(0, path.startsWith("@") ? 2 : 1)
    .join("/");

export async function buildBundles(outdir = "dist"): Promise<BuildResult> {
  const out = resolve(outdir);
  await rm(out, { recursive: true, force: true });
  const result = await build({
    entryPoints: ENTRY_POINTS,
    outdir: out,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: true,
    logLevel: "warning",
    metafile: true,
  });
  await cp("db/migrations", resolve(out, "migrations"), { recursive: true });
  return {
    files: Object.keys(ENTRY_POINTS).map((name) => resolve(out, `${name}.js`)),
    inputs: Object.keys(result.metafile.inputs),
    packages: [
      ...new Set(
        Object.values(result.metafile.outputs).flatMap((o) =>
          o.imports
            .filter((i) => i.external && !i.path.startsWith("node:"))
            .map((i) => packageOf(i.path)),
        ),
      ),
    ].sort(),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { files } = await buildBundles(process.argv[2]);
  console.log(files.join("\n"));
}
