/** @jsxImportSource hono/jsx */

/**
 * A labelled select of a filter form. Unless `all` is false its first option is "all" (the value
 * "", no filter); an option is a value shown as it is, or a value with its label.
 */
export function FilterSelect(props: {
  name: string;
  label: string;
  value: string;
  options: readonly (string | { value: string; label: string })[];
  all?: boolean;
}) {
  return (
    <label>
      {props.label}
      <select name={props.name}>
        {props.all === false ? null : (
          <option value="" selected={props.value === ""}>
            all
          </option>
        )}
        {props.options.map((o) => {
          const { value, label } = typeof o === "string" ? { value: o, label: o } : o;
          return (
            <option value={value} selected={props.value === value}>
              {label}
            </option>
          );
        })}
      </select>
    </label>
  );
}
