import { readFileSync } from "node:fs";
import { DockerfileParser, type Instruction } from "dockerfile-ast";

// Lectura de infra/docker/Dockerfile por etapas, compartida por las pruebas de infra.
export const DOCKERFILE = "infra/docker/Dockerfile";

export interface Stage {
  name: string;
  /** Imagen o etapa de la que parte (`FROM x AS name`). */
  base: string;
  instructions: Instruction[];
}

export function readStages(path = DOCKERFILE): Stage[] {
  const dockerfile = DockerfileParser.parse(readFileSync(path, "utf8"));
  const stages: Stage[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    const keyword = instruction.getKeyword();
    if (keyword === "FROM") {
      const args = instruction.getArguments().map((a) => a.getValue());
      const asIndex = args.findIndex((a) => a.toUpperCase() === "AS");
      stages.push({
        name: asIndex >= 0 ? (args[asIndex + 1] ?? "") : String(stages.length),
        base: args[0] ?? "",
        instructions: [],
      });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return stages;
}

export function stageNamed(stages: Stage[], name: string): Stage {
  const stage = stages.find((s) => s.name === name);
  if (!stage) throw new Error(`Dockerfile has no stage ${name}`);
  return stage;
}

/** La etapa y sus antecesoras dentro del mismo Dockerfile, de la más cercana a la más lejana. */
export function lineage(stages: Stage[], name: string): Stage[] {
  const chain: Stage[] = [];
  let current: Stage | undefined = stageNamed(stages, name);
  while (current) {
    chain.push(current);
    const base: string = current.base;
    current = stages.find((s) => s.name === base);
  }
  return chain;
}

/** Última instrucción con esa palabra clave vigente en la etapa (heredada si hace falta). */
export function effective(stages: Stage[], name: string, keyword: string): Instruction | undefined {
  for (const stage of lineage(stages, name)) {
    const found = stage.instructions.filter((i) => i.getKeyword() === keyword).at(-1);
    if (found) return found;
  }
  return undefined;
}

export function args(instruction: Instruction): string[] {
  return instruction.getArguments().map((a) => a.getValue());
}

/** Argumentos de CMD/HEALTHCHECK en forma exec (`["node", "x.js"]`). */
export function execForm(instruction: Instruction, skip = 0): string[] {
  const text = instruction.getArgumentsContent() ?? "";
  const start = text.indexOf("[");
  const parsed: unknown = JSON.parse(text.slice(start));
  if (!Array.isArray(parsed)) throw new Error(`not exec form: ${text}`);
  return parsed.slice(skip).map(String);
}
