DROP TABLE deliveries;
DROP TABLE notifications;
DROP TABLE user_sequences;
DROP TABLE endpoints;
