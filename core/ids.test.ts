import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { base64url, canonicalJson, fromBase64url, isUuid, newId, sha256Hex, slugify } from "./ids";

describe("canonicalJson", () => {
  it("no depende del orden de inserción de las claves, también anidadas", () => {
    const a = canonicalJson({ b: 1, a: { y: [1, 2], x: "s" }, c: null });
    const b = canonicalJson({ c: null, a: { x: "s", y: [1, 2] }, b: 1 });
    expect(a).toBe(b);
    expect(a).toBe('{"a":{"x":"s","y":[1,2]},"b":1,"c":null}');
  });

  it("los arrays conservan el orden", () => {
    expect(canonicalJson([3, 1, 2])).toBe("[3,1,2]");
    expect(canonicalJson([{ b: 2, a: 1 }, "z"])).toBe('[{"a":1,"b":2},"z"]');
    expect(canonicalJson([1, 2])).not.toBe(canonicalJson([2, 1]));
  });

  it("omite las claves con valor undefined", () => {
    expect(canonicalJson({ a: 1, b: undefined })).toBe('{"a":1}');
    expect(canonicalJson({ a: 1, b: undefined })).toBe(canonicalJson({ a: 1 }));
  });

  it("escapa claves y cadenas como JSON", () => {
    expect(canonicalJson({ 'k"1': 'v"\n' })).toBe('{"k\\"1":"v\\"\\n"}');
    expect(canonicalJson("á")).toBe('"á"');
    expect(canonicalJson(true)).toBe("true");
  });

  it("equivale a JSON.parse del resultado (propiedad)", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = canonicalJson(value);
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)));
      }),
    );
  });

  it("undefined dentro de un array se serializa como null, igual que JSON", () => {
    expect(canonicalJson([1, undefined, 2])).toBe("[1,null,2]");
  });
});

describe("slugify", () => {
  it("quita acentos y signos", () => {
    expect(slugify("Clínica Éxito S.A.")).toBe("clinica-exito-s-a");
    expect(slugify("  Ñandú & Co  ")).toBe("nandu-co");
    expect(slugify("Hello---World")).toBe("hello-world");
  });

  it("respeta el largo máximo sin terminar en guion", () => {
    expect(slugify("abcdefghijklmnopqrstuvwxyz0123")).toBe("abcdefghijklmnopqrstuvwx");
    expect(slugify("abcd efgh", 5)).toBe("abcd");
    expect(slugify("abcdef", 3)).toBe("abc");
  });

  it("nunca devuelve vacío: cae en 'tenant'", () => {
    expect(slugify("")).toBe("tenant");
    expect(slugify("!!!")).toBe("tenant");
    expect(slugify("日本語")).toBe("tenant");
  });

  it("siempre produce un slug válido (propiedad)", () => {
    fc.assert(
      fc.property(
        // Mezcla texto latino con acentos y signos (el caso común, que sí produce slugs largos que
        // recortar) con cualquier grafema.
        fc.oneof(
          fc.string({
            unit: fc.constantFrom(..."abcXYZ019 -_.&ñÑáÉüç".split("")),
            maxLength: 60,
          }),
          fc.string({ unit: "grapheme", maxLength: 60 }),
        ),
        fc.integer({ min: 1, max: 40 }),
        (value, max) => {
          const slug = slugify(value, max);
          expect(slug).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
          if (slug !== "tenant") expect(slug.length).toBeLessThanOrEqual(max);
        },
      ),
    );
  });
});

describe("base64url", () => {
  it("codifica sin relleno y con el alfabeto URL", () => {
    expect(base64url(new Uint8Array([0xfb, 0xff, 0xfe]))).toBe("-__-");
    expect(base64url(new Uint8Array([1]))).toBe("AQ");
    expect(base64url(new Uint8Array([]))).toBe("");
    expect(Array.from(fromBase64url("AQ"))).toEqual([1]);
  });

  it("ida y vuelta con bytes aleatorios (propiedad)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const encoded = base64url(bytes);
        expect(encoded).toMatch(/^[A-Za-z0-9_-]*$/);
        expect(encoded).toBe(Buffer.from(bytes).toString("base64url"));
        expect(Array.from(fromBase64url(encoded))).toEqual(Array.from(bytes));
      }),
    );
  });
});

describe("isUuid", () => {
  it("acepta UUIDs en cualquier capitalización", () => {
    expect(isUuid("123e4567-e89b-12d3-a456-426614174000")).toBe(true);
    expect(isUuid("123E4567-E89B-12D3-A456-426614174000")).toBe(true);
    expect(isUuid(newId())).toBe(true);
  });

  it("rechaza lo que no es UUID", () => {
    expect(isUuid("")).toBe(false);
    expect(isUuid("123e4567e89b12d3a456426614174000")).toBe(false);
    expect(isUuid("123e4567-e89b-12d3-a456-42661417400")).toBe(false);
    expect(isUuid("123e4567-e89b-12d3-a456-4266141740000")).toBe(false);
    expect(isUuid("g23e4567-e89b-12d3-a456-426614174000")).toBe(false);
    expect(isUuid(" 123e4567-e89b-12d3-a456-426614174000")).toBe(false);
    expect(isUuid("123e4567-e89b-12d3-a456-426614174000\n")).toBe(false);
  });
});

describe("sha256Hex", () => {
  it("matches the FIPS 180-2 vector and node:crypto for any text, including astral code points", async () => {
    expect(await sha256Hex("abc")).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: "grapheme" }), async (text) => {
        expect(await sha256Hex(text)).toBe(createHash("sha256").update(text, "utf8").digest("hex"));
      }),
    );
  });
});
