-- One database per service (compose.yaml): the users service's and the audit log's.
CREATE DATABASE users;
CREATE DATABASE audit;
