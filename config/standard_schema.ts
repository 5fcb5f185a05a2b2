/**
 * The parts of the Standard Schema interface (https://standardschema.dev) configuration uses:
 * any validator that implements it (zod 4, valibot, arktype) can be the schema.
 *
 * @module
 */

/** One validation problem reported by a Standard Schema validator. */
export interface StandardIssue {
  /** What is wrong. */
  readonly message: string;
  /** Where, as keys or `{ key }` segments. */
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

/** The result of a Standard Schema validation. */
export type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<StandardIssue> };

/** A Standard Schema (v1) validator. */
export interface StandardSchema<Input = unknown, Output = Input> {
  /** The Standard Schema properties. */
  readonly "~standard": {
    /** Always 1. */
    readonly version: 1;
    /** The library, such as `"zod"`. */
    readonly vendor: string;
    /** Validates a value. */
    readonly validate: (
      value: unknown,
    ) => StandardResult<Output> | Promise<StandardResult<Output>>;
    /** Type carriers only, never set at run time. */
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  };
}

/** The input type of a schema (what files and layers hold). */
export type SchemaInput<S extends StandardSchema> = NonNullable<
  S["~standard"]["types"]
>["input"];

/** The output type of a schema (what `get()` returns). */
export type SchemaOutput<S extends StandardSchema> = NonNullable<
  S["~standard"]["types"]
>["output"];
