const texts = new WeakMap<object, string>();

/**
 * JSON.stringify of an object that nobody changes once it is made (an event's envelope, a policy
 * decision), computed once and kept as long as the object lives: the event's row and the body of
 * its delivery, or a delivery's row at each checkpoint, share one text.
 */
export function jsonOnce(value: object): string {
  let text = texts.get(value);
  if (text === undefined) {
    text = JSON.stringify(value);
    texts.set(value, text);
  }
  return text;
}
