-- A delivery that is being retried was called `failed`, which reads as final: it is `retrying` now.
UPDATE `deliveries` SET `state` = 'retrying' WHERE `state` = 'failed';
