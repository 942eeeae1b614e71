// Dobles de los globales de SST ($config, $app, $dev, $jsonParse, sst.*): SST descarga Pulumi y
// necesita cuentas de AWS y Cloudflare, imposible aquí. Solo anotan qué se construye y con qué
// argumentos, para evaluar sst.config.ts y revisar su cableado (test/infra/sst-*.test.ts).

export interface Recorded {
  type: string;
  name: string;
  args: Record<string, unknown>;
  instance: object;
}

export class FakeOutput<T> {
  constructor(readonly value: T) {}
  apply<U>(fn: (value: T) => U): FakeOutput<U> {
    return new FakeOutput(fn(this.value));
  }
}

export const unwrap = (v: unknown): unknown => (v instanceof FakeOutput ? v.value : v);

export interface LoadedConfig {
  app(input?: { stage?: string }): Record<string, unknown>;
  run(): Promise<Record<string, unknown>>;
}

export interface SstRun {
  /** Componentes creados, en orden. */
  calls: Recorded[];
  /** Rutas del ApiGatewayV2. */
  routes: { route: string; handler: Record<string, unknown> }[];
  outputs: Record<string, unknown>;
}

/**
 * Instala los dobles (hasta `restore()`: los transforms del config usan $jsonParse al llamarlos) y
 * evalúa sst.config.ts; `run(stage)` corre su run() para un stage.
 */
export async function installSstStandIns(): Promise<{
  config: LoadedConfig;
  run(stage: string): Promise<SstRun>;
  restore(): void;
}> {
  let current: SstRun = { calls: [], routes: [], outputs: {} };
  const component = (type: string) =>
    class {
      readonly urn: FakeOutput<string>;
      readonly url: FakeOutput<string>;
      constructor(name: string, args: Record<string, unknown> = {}) {
        this.urn = new FakeOutput(`urn:pulumi:test::farutech::${type}::${name}`);
        this.url = new FakeOutput(`https://${name.toLowerCase()}.example`);
        current.calls.push({ type, name, args, instance: this });
      }
    };
  const ApiGatewayV2 = class extends component("sst:aws:ApiGatewayV2") {
    route(route: string, handler: Record<string, unknown>) {
      current.routes.push({ route, handler });
    }
  };
  const globals: Record<string, unknown> = {
    $config: (config: unknown) => config,
    $app: { name: "farutech-orchestrator", stage: "production" },
    $dev: false,
    $jsonParse: (text: unknown) => new FakeOutput(JSON.parse(String(unwrap(text)))),
    sst: {
      Secret: component("sst:sst:Secret"),
      aws: {
        ApiGatewayV2,
        Vpc: component("sst:aws:Vpc"),
        Cluster: component("sst:aws:Cluster"),
        Service: component("sst:aws:Service"),
      },
      cloudflare: { Worker: component("sst:cloudflare:Worker") },
      x: { DevCommand: component("sst:x:DevCommand") },
    },
  };
  const g = globalThis as Record<string, unknown>;
  const saved = Object.fromEntries(Object.keys(globals).map((k) => [k, g[k]]));
  Object.assign(g, globals);
  // Ruta en variable: el tsc del repo no debe seguir el import (infra/sst tiene sus tipos).
  const path = "../../sst.config.ts";
  const config = ((await import(path)) as { default: LoadedConfig }).default;
  return {
    config,
    async run(stage) {
      current = { calls: [], routes: [], outputs: {} };
      g.$app = { name: "farutech-orchestrator", stage };
      current.outputs = await config.run();
      return current;
    },
    restore: () => Object.assign(g, saved),
  };
}
