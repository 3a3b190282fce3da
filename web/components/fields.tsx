/** @jsxImportSource hono/jsx */

/**
 * The controls of a configuration form (docs/console.md#configuration): one per schema field, its
 * label, its hint and its messages tied to it (`aria-describedby`, `aria-invalid`), so a screen
 * reader reads the problem with the field.
 */
export interface FieldView {
  path: readonly string[];
  name: string;
  input: "text" | "textarea" | "number" | "select" | "checkbox" | "lines" | "yaml";
  required: boolean;
  options?: readonly string[];
  hint?: string;
  secret: boolean;
  value: string;
  checked: boolean;
  errors: readonly string[];
}

/** `retry.max_attempts` → `f-retry-max_attempts`: ids only of letters, digits, `-` and `_`. */
export const fieldId = (name: string) => `f-${name.replace(/[^A-Za-z0-9_]/g, "-")}`;

export function Field(props: { field: FieldView }) {
  const f = props.field;
  const id = fieldId(f.name);
  const hintId = f.hint ? `${id}-hint` : null;
  const errId = f.errors.length ? `${id}-err` : null;
  const describedBy = [hintId, errId].filter(Boolean).join(" ") || undefined;
  const common = {
    id,
    name: f.name,
    "aria-describedby": describedBy,
    "aria-invalid": f.errors.length ? "true" : undefined,
  };
  const label = f.path.at(-1)!.replaceAll("_", " ");
  let control;
  switch (f.input) {
    case "select":
      control = (
        <select {...common} required={f.required}>
          <option value="" selected={f.value === ""}>
            {f.required ? "choose…" : "(not set)"}
          </option>
          {(f.options ?? []).map((o) => (
            <option value={o} selected={f.value === o}>
              {o}
            </option>
          ))}
          {f.value && !(f.options ?? []).includes(f.value) ? (
            <option value={f.value} selected>
              {f.value}
            </option>
          ) : null}
        </select>
      );
      break;
    case "checkbox":
      control = <input {...common} type="checkbox" value="true" checked={f.checked} />;
      break;
    case "number":
      control = <input {...common} type="text" inputmode="numeric" value={f.value} required={f.required} />;
      break;
    case "textarea":
    case "lines":
    case "yaml":
      control = (
        <textarea {...common} rows={f.input === "lines" ? 3 : 8} spellcheck={false}>
          {f.value}
        </textarea>
      );
      break;
    default:
      control = (
        <input
          {...common}
          type="text"
          value={f.value}
          required={f.required}
          autocomplete="off"
          placeholder={f.secret ? "vault:<tenant>/<name>" : undefined}
        />
      );
  }
  return (
    <div class={f.errors.length ? "field invalid" : "field"}>
      {f.input === "checkbox" ? (
        <label class="check" for={id}>
          {control}
          {label}
        </label>
      ) : (
        <label for={id}>
          {label}
          {f.required ? <span class="muted"> (required)</span> : null}
        </label>
      )}
      {f.input === "checkbox" ? null : control}
      {f.hint ? (
        <small id={hintId!} class="hint">
          {f.hint}
        </small>
      ) : null}
      {f.errors.length ? (
        <ul id={errId!} class="field-errors">
          {f.errors.map((e) => (
            <li>{e}</li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

/** The fields in schema order; those of a nested object (`retry.*`, `verify.*`) in a fieldset of their own. */
export function Fields(props: { fields: readonly FieldView[] }) {
  const groups: { legend: string | null; fields: FieldView[] }[] = [];
  for (const f of props.fields) {
    const legend = f.path.length > 1 ? f.path.slice(0, -1).join(".") : null;
    const last = groups.at(-1);
    if (last && last.legend === legend) last.fields.push(f);
    else groups.push({ legend, fields: [f] });
  }
  return (
    <>
      {groups.map((g) =>
        g.legend === null ? (
          g.fields.map((f) => <Field field={f} />)
        ) : (
          <fieldset>
            <legend>{g.legend}</legend>
            {g.fields.map((f) => (
              <Field field={f} />
            ))}
          </fieldset>
        ),
      )}
    </>
  );
}
